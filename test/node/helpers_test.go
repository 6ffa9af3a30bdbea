package node_test

import (
	"runtime"
	"strconv"
)

func runtimeArch() string { return runtime.GOARCH }

func itoa(i int) string { return strconv.Itoa(i) }
