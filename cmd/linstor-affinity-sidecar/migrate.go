package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	lapi "github.com/LINBIT/golinstor/client"
	"k8s.io/klog/v2"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/podconfig"
)

// migrateProperties moves saved state from resource definitions (where old
// upstream versions kept it) to volume definitions, then exits.
func migrateProperties(name string, args []string) {
	var c config
	exitOnHelp(newFlagSet(name+" migrate-properties", &c).Parse(args))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	settings, _ := podconfig.LinstorFrom(os.LookupEnv)
	if err := podconfig.CheckFiles(settings, os.Stat, nil, c.csiContainer); err != nil {
		fail("%v", err)
	}
	lc, _, err := sidecar.NewLinstorClient(settings, lapi.Log(linstorLogger{}))
	if err != nil {
		fail("%v", err)
	}
	linstor := sidecar.NewLinstor(lc, c.propertyNamespace)
	fctx, cancel := context.WithTimeout(ctx, c.timeout)
	view, err := linstor.Fetch(fctx)
	cancel()
	if err != nil {
		fail("%v", err)
	}
	res, err := sidecar.MigrateProperties(ctx, view, linstor)
	klog.InfoS("Migrated saved state", "moved", res.Moved, "alreadyMigrated", res.AlreadyMigrated, "conflicts", res.Conflicts, "invalid", res.Invalid)
	if err != nil {
		fail("%v", err)
	}
	klog.Flush()
	if res.Conflicts+res.Invalid > 0 {
		os.Exit(3)
	}
}
