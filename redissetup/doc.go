// Package redissetup writes the Redis (or Valkey) side of an appliance host, as
// `redis-carp-proxy redis init` does: one cluster-enabled instance configuration per port
// in the FreeBSD port's layout, one data directory per instance owned by the server's
// user, and the rc.conf.d settings that make the port's rc script start every instance as
// a profile. It is idempotent, shows a unified diff instead of writing with DryRun, and
// keeps a backup of every file it replaces or removes.
package redissetup
