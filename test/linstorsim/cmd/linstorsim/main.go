// Command linstorsim serves a simulated LINSTOR controller REST API on
// loopback, for demos and for tests that run their client as a separate
// process. Drive it through the JSON control API under /_sim/.
//
//	linstorsim --listen 127.0.0.1:0 --print-url [--tls [--require-client-cert] --client-cert-dir DIR]
//	           [--property-namespace Aux/topology] [--scenario cluster.yaml]
//	           [--realistic [--delete-window 2s]]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/piraeusdatastore/linstor-affinity-sidecar/test/linstorsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "linstorsim:", err)
		os.Exit(1)
	}
}

// run parses args, starts the simulator and serves until ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("linstorsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "loopback address to serve on (port 0 = any free port)")
	printURL := fs.Bool("print-url", false, "print the base URL as the first line on stdout")
	useTLS := fs.Bool("tls", false, "serve HTTPS with a certificate from an in-process CA")
	requireCert := fs.Bool("require-client-cert", false, "refuse clients without a certificate from that CA (implies --tls)")
	certDir := fs.String("client-cert-dir", "", "with TLS: write ca.crt, tls.crt and tls.key for a client into this directory")
	ns := fs.String("property-namespace", linstorsim.DefaultPropertyNamespace, "namespace of the node topology properties")
	scenario := fs.String("scenario", "", "YAML or JSON scenario to preload (nodes, resourceGroups, volumes, generate)")
	realistic := fs.Bool("realistic", false, "answer like a real linstor-server: running state that changes between requests, Outdated and Failed disks, a deletion window for removed replicas")
	deleteWindow := fs.Duration("delete-window", linstorsim.DefaultDeleteWindow, "with --realistic: how long a removed replica stays listed (DRBD_DELETE, then DELETE); 0: the default, negative: none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}

	sim := linstorsim.New(linstorsim.Options{
		Listen:            *listen,
		TLS:               *useTLS,
		RequireClientCert: *requireCert,
		PropertyNamespace: *ns,
		Realistic:         *realistic,
		DeleteWindow:      *deleteWindow,
	})
	if *scenario != "" {
		if err := sim.LoadScenarioFile(*scenario); err != nil {
			return err
		}
	}
	if err := sim.Start(); err != nil {
		return err
	}
	defer func() { _ = sim.Close() }()

	if *certDir != "" {
		if _, err := sim.WriteClientFiles(*certDir); err != nil {
			return fmt.Errorf("client certificates: %w", err)
		}
	}
	if *printURL {
		fmt.Fprintln(stdout, sim.URL())
	}
	fmt.Fprintf(stderr, "linstorsim: serving %s (%d nodes, %d volumes)\n", sim.URL(), len(sim.Nodes()), sim.VolumeCount())
	<-ctx.Done()
	return nil
}
