// Package command is the Redis command table as the proxy routes by it: each command's
// arity, flags (read-only, write, blocking, movable keys, refused inside MULTI) and key
// positions, a built-in table merged with a node's COMMAND reply, and the hash slot of
// keys (CRC16, hash tags). It imports only the standard library.
package command
