// Package chaos injects faults into a cluster of fanout nodes and checks
// what clients received against what was published.
//
// It runs redis-server and nats-server processes on free loopback ports
// ([StartRedis], [StartNATS], [StartRedisCluster], [StartNATSCluster]),
// never the machine's shared servers, and can kill, stop, continue and
// restart them, or restart them from older data. [Run] adds hub nodes as
// separate processes ([Node], running [RunNode]), Go clients that record
// every event and a publisher, injects each [Scenario]'s fault, and judges
// the outcome with [Verify]. The command internal/chaos/cmd/chaos runs it
// and prints the table that docs/RELIABILITY.md shows.
package chaos
