package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	lapi "github.com/LINBIT/golinstor/client"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/linstor"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/podconfig"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/repair"
	"k8s.io/klog/v2"
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
	lc, _, err := linstor.NewLinstorClient(settings, lapi.Log(linstorLogger{}))
	if err != nil {
		fail("%v", err)
	}
	linstor := linstor.NewLinstor(lc, c.propertyNamespace)
	fctx, cancel := context.WithTimeout(ctx, c.timeout)
	view, err := linstor.Fetch(fctx)
	cancel()
	if err != nil {
		fail("%v", err)
	}
	res, err := repair.MigrateProperties(ctx, view, linstor)
	klog.InfoS("Migrated saved state", "moved", res.Moved, "alreadyMigrated", res.AlreadyMigrated, "conflicts", res.Conflicts, "invalid", res.Invalid)
	if err != nil {
		fail("%v", err)
	}
	klog.Flush()
	if res.Conflicts+res.Invalid > 0 {
		os.Exit(3)
	}
}
