package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	lapi "github.com/LINBIT/golinstor/client"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/csiprobe"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/controller"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/decide"
	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/linstor"
)

// Exit statuses of check.
const (
	checkInSync  = 0
	checkError   = 1
	checkDrifted = 2
)

// runCheck is `linstor-affinity-sidecar check`: a read-only report of every
// PV of the driver. It changes nothing.
func runCheck(name string, args []string) int {
	var c config
	fs := newFlagSet(name+" check", &c)
	output := fs.String("o", "table", "Output format: table or json.")
	exitOnHelp(fs.Parse(args))
	if *output != "table" && *output != "json" {
		klog.ErrorS(nil, "-o must be table or json", "got", *output)
		return checkError
	}
	if _, err := c.validateCheck(); err != nil {
		klog.ErrorS(err, "Invalid flags")
		return checkError
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	rep, err := buildCheckReport(ctx, c, setFlags(fs))
	if err != nil {
		klog.ErrorS(err, "Check failed")
		return checkError
	}
	if *output == "json" {
		err = rep.WriteJSON(os.Stdout)
	} else {
		err = rep.WriteTable(os.Stdout)
	}
	if err != nil {
		return checkError
	}
	if rep.Summary.Drifted > 0 {
		return checkDrifted
	}
	return checkInSync
}

// validateCheck is validate for check, where standalone mode is the fallback
// when the CSI socket cannot be reached.
func (c *config) validateCheck() (decide.Policy, error) {
	if c.csiAddress == "" && c.driverName == "" {
		return nil, fmt.Errorf("without --csi-address, check needs --driver-name")
	}
	return decide.ParsePolicy(c.defaultPolicy)
}

func buildCheckReport(ctx context.Context, c config, explicit map[string]bool) (controller.Report, error) {
	restConfig, err := kubeConfig(c)
	if err != nil {
		return controller.Report{}, fmt.Errorf("kubernetes configuration: %w", err)
	}
	kube, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return controller.Report{}, err
	}
	var inspector controller.Inspector
	driverName := c.driverName
	fromCSI := false
	if c.csiAddress != "" {
		client, err := csiprobe.Connect(ctx, c.csiAddress, csiprobe.Options{Timeout: c.timeout, ConnectTimeout: 3 * time.Second})
		if err == nil {
			defer func() { _ = client.Close() }()
			info, ierr := client.DriverInfo(ctx)
			if ierr == nil {
				inspector = csiDriver{client: client}
				if driverName == "" {
					driverName = info.Name
				}
				fromCSI = true
			} else {
				err = ierr
			}
		}
		if err != nil {
			if driverName == "" {
				return controller.Report{}, fmt.Errorf("CSI driver at %s: %w (give --driver-name to check without it)", c.csiAddress, err)
			}
			klog.InfoS("CSI driver not reachable; reporting without its view", "address", c.csiAddress, "err", err)
		}
	}
	// One try's worth of time: a check reports, it does not wait.
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	settings, err := linstorSettings(actx, kube, &c, explicit, fromCSI, newHealth(), &record.FakeRecorder{})
	cancel()
	if err != nil {
		return controller.Report{}, err
	}
	defaultPolicy, err := decide.ParsePolicy(c.defaultPolicy)
	if err != nil {
		return controller.Report{}, fmt.Errorf("--default-remote-access-policy: %w", err)
	}
	lc, bulk, err := linstor.NewLinstorClient(settings, lapi.Log(linstorLogger{}))
	if err != nil {
		return controller.Report{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// The loop's read, lists and decision, once.
	view, err := linstor.NewBulkLinstor(lc, bulk, c.propertyNamespace, 0).Fetch(cctx)
	if err != nil {
		return controller.Report{}, err
	}
	pvs, scs, err := controller.Snapshot(cctx, controller.KubeSources(kube, false))
	if err != nil {
		return controller.Report{}, err
	}
	cfg := decide.Config{DriverName: driverName, GracePeriod: c.gracePeriod, DefaultPolicy: defaultPolicy}
	now := time.Now()
	decisions, _, err := controller.DecideListed(pvs, scs, view, cfg, now)
	if err != nil {
		return controller.Report{}, err
	}
	scList, err := scs.List(labels.Everything())
	if err != nil {
		return controller.Report{}, err
	}
	byName := make(map[string]*storagev1.StorageClass, len(scList))
	for _, sc := range scList {
		byName[sc.Name] = sc
	}
	return controller.BuildReport(ctx, driverName, decisions, byName, inspector, c.timeout, now), nil
}
