// Package chaos injects faults into the servers a cluster of hubs depends
// on: it runs redis-server and nats-server processes on free loopback ports
// that it can kill, stop, continue and restart, never the machine's shared
// servers.
package chaos
