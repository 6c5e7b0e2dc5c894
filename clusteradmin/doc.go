// Package clusteradmin is the control plane of `redis-carp-proxy cluster`: it creates a
// Redis Cluster across the appliance hosts with one master per host and every replica on
// another host than its master (Create), checks a running cluster for the problems that
// matter to the appliance and names the command that fixes each (Check), and resets the
// nodes of a failed create so it can be run again (Reset). It talks to the nodes with
// go-redis; every wait is bounded and reports progress.
//
// A host is identified by the address part of HOST:PORT, so instances must be addressed
// by the physical address they bind (as `redis init` configures them).
package clusteradmin
