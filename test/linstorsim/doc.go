// Package linstorsim is an in-memory LINSTOR controller that speaks the LINSTOR
// REST API on loopback, so the sidecar and the real LINSTOR CSI driver can be
// tested and benchmarked without a LINSTOR cluster.
//
// It answers with golinstor's JSON shapes (nodes, storage pools, resource
// groups, resource definitions with volume definitions, resources with
// volumes, ApiCallRc lists for mutations, ApiCallError bodies for errors and
// 404 for missing objects), places replicas on autoplace like LINSTOR does
// (place count, storage pools, node lists, replicas-on-same/different), and
// lets a test drive the scenario around the client under test: nodes come and
// go, replicas move, faults are injected per endpoint, requests are counted
// per route and every deletion is logged.
//
// The same controls are served as JSON under /_sim/ on the same server, so the
// standalone program in cmd/linstorsim can be driven from a shell script.
//
// By default every answer repeats the stored state byte for byte. Realistic
// mode (Options.Realistic) answers as a real linstor-server does: running
// state that changes between requests, Outdated and Failed disks, a deletion
// window for removed replicas, no resources without volumes in the view
// (realistic.go, deletewindow.go).
//
// Stored records are immutable: every change replaces a record with a new
// copy, so list requests collect pointers under a read lock and encode without
// holding it, and each record's JSON is encoded once and reused.
package linstorsim
