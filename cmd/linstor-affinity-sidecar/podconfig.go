package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
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

// settingsBackoff spaces the attempts to read the CSI container's settings:
// quick at first (the API server may just be slow to answer), then every two
// minutes at most.
var settingsBackoff = wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: 2 * time.Minute}

// linstorSettings is how to reach LINSTOR, as one value: the LS_*
// environment when any of it is set, otherwise (fromCSI: the sidecar runs
// next to the driver) what the LINSTOR CSI container of its own pod uses.
// The property namespace and default policy are taken from that container
// too, unless flags set them (explicit). Every *_FILE setting must name a
// file this container has.
func linstorSettings(ctx context.Context, kube kubernetes.Interface, c *config, explicit map[string]bool, fromCSI bool,
	h *health, recorder record.EventRecorder) (podconfig.Linstor, error) {
	settings, haveEnv := podconfig.LinstorFrom(os.LookupEnv)
	var files map[string]podconfig.File
	if fromCSI {
		h.starting("reading the LINSTOR settings of container " + c.csiContainer)
		s, err := adoptCSIContainerSettings(ctx, kube, c, explicit, haveEnv, h, recorder)
		if err != nil {
			return podconfig.Linstor{}, fmt.Errorf("stopped while reading the CSI container's settings: %w", err)
		}
		if s != nil && !haveEnv {
			settings, files = s.Linstor(), s.Files
		}
	}
	if err := podconfig.CheckFiles(settings, os.Stat, files, c.csiContainer); err != nil {
		return podconfig.Linstor{}, err
	}
	return settings, nil
}

// adoptCSIContainerSettings reads the LINSTOR CSI container of the
// sidecar's own pod for the LINSTOR connection (unless haveEnv: the LS_*
// environment is given), the property namespace and the default policy
// (unless flags set them), and returns what it found, or nil when it did
// not look.
//
// In the pod (POD_NAME set) it never goes on without them: a pod or container
// it cannot read would leave golinstor's default, http://localhost:3370,
// which is no LINSTOR. Until it succeeds, /readyz says why, the pod gets a
// warning Event and the log an error, and it tries again with backoff. Only
// outside a pod (no POD_NAME: a developer's kubeconfig) does it go on with the
// flags and environment alone. It returns an error only when ctx ends first.
func adoptCSIContainerSettings(ctx context.Context, kube kubernetes.Interface, c *config, explicit map[string]bool, haveEnv bool,
	h *health, recorder record.EventRecorder) (*podconfig.Settings, error) {
	needNS, needPolicy := !explicit["property-namespace"], !explicit["default-remote-access-policy"]
	if c.csiContainer == "" || (haveEnv && !needNS && !needPolicy) {
		return nil, nil
	}
	namespace, pod, ok := podconfig.Self()
	if !ok {
		klog.V(2).InfoS("Not running in a pod; using flags and LS_* environment only")
		return nil, nil
	}
	strict := os.Getenv("POD_NAME") != ""
	var s *podconfig.Settings
	var lastErr string
	backoff := settingsBackoff
	for {
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		var err error
		s, err = podconfig.Discover(cctx, kube, namespace, pod, c.csiContainer)
		cancel()
		if err == nil {
			break
		}
		if !strict {
			klog.InfoS("Cannot read settings from the CSI container; using flags and LS_* environment only (POD_NAME is not set, so this may not be a pod)", "err", err)
			return nil, nil
		}
		msg := fmt.Sprintf("cannot read the LINSTOR settings of container %s of pod %s/%s, and will not guess them: %v "+
			"(set --csi-container to the LINSTOR CSI container's name, or --csi-container= with LS_* variables)", c.csiContainer, namespace, pod, err)
		h.starting(msg)
		delay := backoff.Step()
		klog.ErrorS(err, "Cannot read the LINSTOR settings of the CSI container; not ready, trying again", "container", c.csiContainer, "pod", namespace+"/"+pod, "retryIn", delay.Round(time.Second))
		if msg != lastErr {
			lastErr = msg
			recorder.Event(podRef(namespace, pod), corev1.EventTypeWarning, "SettingsUnreadable", msg)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: %w", msg, ctx.Err())
		case <-time.After(delay):
		}
	}
	if lastErr != "" {
		recorder.Event(podRef(namespace, pod), corev1.EventTypeNormal, "SettingsRead", "read the LINSTOR settings of container "+c.csiContainer)
	}
	if haveEnv {
		klog.InfoS("LINSTOR connection from the LS_* environment; the CSI container's is not used")
	} else {
		for _, name := range podconfig.LinstorEnv() {
			if v, ok := s.Env[name]; ok {
				klog.InfoS("LINSTOR setting taken from the CSI container", "setting", name, "value", podconfig.Redacted(name, v))
			}
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
	return s, nil
}

// podRef names the sidecar's own pod for Events; with POD_UID (downward API)
// kubectl describe pod lists them too.
func podRef(namespace, name string) *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: namespace, Name: name, UID: types.UID(os.Getenv("POD_UID"))}
}
