package main

import (
	"context"
	"flag"
	"os"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/sidecar/podconfig"
)

// setFlags lists the flags given on the command line: explicit settings win
// over anything found in the CSI container.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// adoptCSIContainerSettings takes the LINSTOR connection, property namespace
// and default policy from the LINSTOR CSI container of the sidecar's own pod,
// unless they are given explicitly (LS_* environment, flags). Outside a pod, or
// when the pod cannot be read, it says so and the sidecar goes on with what
// it was given.
func adoptCSIContainerSettings(ctx context.Context, kube kubernetes.Interface, c *config, explicit map[string]bool) {
	haveEnv := false
	for _, k := range []string{"LS_CONTROLLERS", "LS_ROOT_CA", "LS_USER_CERTIFICATE", "LS_USER_KEY", "LS_ROOT_CA_FILE",
		"LS_USER_CERTIFICATE_FILE", "LS_USER_KEY_FILE", "LS_USERNAME", "LS_BEARER_TOKEN_FILE"} {
		if os.Getenv(k) != "" {
			haveEnv = true
		}
	}
	needNS, needPolicy := !explicit["property-namespace"], !explicit["default-remote-access-policy"]
	if c.csiContainer == "" || (haveEnv && !needNS && !needPolicy) {
		return
	}
	namespace, pod, ok := podconfig.Self()
	if !ok {
		klog.V(2).InfoS("Not running in a pod; using flags and LS_* environment only")
		return
	}
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	s, err := podconfig.Discover(cctx, kube, namespace, pod, c.csiContainer)
	if err != nil {
		klog.InfoS("Cannot read settings from the CSI container; using flags and LS_* environment only", "err", err)
		return
	}
	if haveEnv {
		klog.InfoS("LINSTOR connection from the LS_* environment; the CSI container's is not used")
	} else {
		for name, v := range s.Env {
			if err := os.Setenv(name, v.Value); err != nil {
				klog.ErrorS(err, "Cannot set", "setting", name)
				continue
			}
			klog.InfoS("LINSTOR setting taken from the CSI container", "setting", name, "value", podconfig.Redacted(name, v))
		}
	}
	if needNS && s.PropertyNamespace != nil {
		c.propertyNamespace = s.PropertyNamespace.Value
		klog.InfoS("Property namespace taken from the CSI container", "namespace", c.propertyNamespace, "source", s.PropertyNamespace.Source)
	}
	if needPolicy && s.DefaultPolicy != nil {
		c.defaultPolicy = s.DefaultPolicy.Value
		klog.InfoS("Default remote access policy taken from the CSI container", "policy", c.defaultPolicy, "source", s.DefaultPolicy.Source)
	}
}
