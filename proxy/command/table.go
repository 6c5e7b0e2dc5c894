package command

import (
	"bytes"
	"strconv"
	"strings"
)

// Flags are the properties of a command that matter for routing.
type Flags uint16

const (
	Readonly Flags = 1 << iota
	Write
	Blocking
	MovableKeys
	NoKeys
	NoMulti // refused inside MULTI ("no_multi"), as Redis does
	Admin   // an administrative command ("admin"): not shown to MONITOR
)

// Info is one entry of the command table.
type Info struct {
	Name  string // lower case
	Arity int    // as COMMAND: negative means "at least -arity"
	First int    // position of the first key (0: none)
	Last  int    // position of the last key; negative counts from the end
	Step  int
	Flags Flags
	// Container: the node reported subcommands (their flags are in Table.sub)
	Container bool
}

// Table maps lower-case command names to their info. It is built once at start-up from
// a backend's COMMAND reply merged over a built-in fallback, and never changed afterwards.
type Table struct {
	Cmds map[string]*Info
	// Sub holds the flags of container commands' subcommands ("xgroup|create"), as the
	// node reports them (readonly.go); empty in the built-in table.
	Sub map[string]Flags
}

// Lookup finds a command by name, case-insensitively, without allocating.
func (t *Table) Lookup(name []byte) *Info {
	var buf [32]byte
	return t.Cmds[string(Lower(buf[:], name))]
}

// builtinCommands is the fallback table used when no node answers COMMAND, and for
// commands a node does not report: name arity first last step flags (r=readonly, w=write,
// b=blocking, m=movable keys).
const builtinCommands = `
get 2 1 1 1 r
set -3 1 1 1 w
setnx 3 1 1 1 w
setex 4 1 1 1 w
psetex 4 1 1 1 w
getset 3 1 1 1 w
getdel 2 1 1 1 w
getex -2 1 1 1 w
append 3 1 1 1 w
strlen 2 1 1 1 r
incr 2 1 1 1 w
decr 2 1 1 1 w
incrby 3 1 1 1 w
decrby 3 1 1 1 w
incrbyfloat 3 1 1 1 w
getrange 4 1 1 1 r
setrange 4 1 1 1 w
mget -2 1 -1 1 r
mset -3 1 -1 2 w
msetnx -3 1 -1 2 w
del -2 1 -1 1 w
unlink -2 1 -1 1 w
exists -2 1 -1 1 r
touch -2 1 -1 1 r
expire -3 1 1 1 w
pexpire -3 1 1 1 w
expireat -3 1 1 1 w
pexpireat -3 1 1 1 w
ttl 2 1 1 1 r
pttl 2 1 1 1 r
persist 2 1 1 1 w
type 2 1 1 1 r
rename 3 1 2 1 w
renamenx 3 1 2 1 w
dump 2 1 1 1 r
restore -4 1 1 1 w
hget 3 1 1 1 r
hset -4 1 1 1 w
hsetnx 4 1 1 1 w
hmset -4 1 1 1 w
hmget -3 1 1 1 r
hgetall 2 1 1 1 r
hdel -3 1 1 1 w
hlen 2 1 1 1 r
hexists 3 1 1 1 r
hincrby 4 1 1 1 w
hincrbyfloat 4 1 1 1 w
hkeys 2 1 1 1 r
hvals 2 1 1 1 r
hscan -3 1 1 1 r
lpush -3 1 1 1 w
rpush -3 1 1 1 w
lpushx -3 1 1 1 w
rpushx -3 1 1 1 w
lpop -2 1 1 1 w
rpop -2 1 1 1 w
llen 2 1 1 1 r
lrange 4 1 1 1 r
lindex 3 1 1 1 r
lset 4 1 1 1 w
lrem 4 1 1 1 w
ltrim 4 1 1 1 w
linsert 5 1 1 1 w
lpos -3 1 1 1 r
lmove 5 1 2 1 w
rpoplpush 3 1 2 1 w
blpop -3 1 -2 1 wb
brpop -3 1 -2 1 wb
blmove 6 1 2 1 wb
brpoplpush 4 1 2 1 wb
sadd -3 1 1 1 w
srem -3 1 1 1 w
smembers 2 1 1 1 r
sismember 3 1 1 1 r
smismember -3 1 1 1 r
scard 2 1 1 1 r
spop -2 1 1 1 w
srandmember -2 1 1 1 r
smove 4 1 2 1 w
sinter -2 1 -1 1 r
sunion -2 1 -1 1 r
sdiff -2 1 -1 1 r
sinterstore -3 1 -1 1 w
sunionstore -3 1 -1 1 w
sdiffstore -3 1 -1 1 w
sscan -3 1 1 1 r
zadd -4 1 1 1 w
zincrby 4 1 1 1 w
zrem -3 1 1 1 w
zscore 3 1 1 1 r
zmscore -3 1 1 1 r
zrank -3 1 1 1 r
zrevrank -3 1 1 1 r
zcard 2 1 1 1 r
zcount 4 1 1 1 r
zrange -4 1 1 1 r
zrevrange -4 1 1 1 r
zrangebyscore -4 1 1 1 r
zrevrangebyscore -4 1 1 1 r
zremrangebyscore 4 1 1 1 w
zremrangebyrank 4 1 1 1 w
zpopmin -2 1 1 1 w
zpopmax -2 1 1 1 w
bzpopmin -3 1 -2 1 wb
bzpopmax -3 1 -2 1 wb
zscan -3 1 1 1 r
pfadd -2 1 1 1 w
pfcount -2 1 -1 1 r
pfmerge -2 1 -1 1 w
setbit 4 1 1 1 w
getbit 3 1 1 1 r
bitcount -2 1 1 1 r
bitpos -3 1 1 1 r
bitop -4 2 -1 1 w
xadd -5 1 1 1 w
xlen 2 1 1 1 r
xrange -4 1 1 1 r
xrevrange -4 1 1 1 r
xdel -3 1 1 1 w
xtrim -4 1 1 1 w
xack -4 1 1 1 w
xgroup -2 0 0 0 w
xread -4 0 0 0 rbm
xreadgroup -7 0 0 0 wbm
geoadd -5 1 1 1 w
geodist -4 1 1 1 r
geopos -2 1 1 1 r
geosearch -7 1 1 1 r
copy -3 1 2 1 w
object -2 2 2 1 r
eval -3 0 0 0 m
evalsha -3 0 0 0 m
eval_ro -3 0 0 0 rm
evalsha_ro -3 0 0 0 rm
fcall -3 0 0 0 m
fcall_ro -3 0 0 0 rm
zunionstore -4 1 1 1 wm
zinterstore -4 1 1 1 wm
zdiffstore -4 1 1 1 wm
zunion -3 0 0 0 rm
zinter -3 0 0 0 rm
zdiff -3 0 0 0 rm
sintercard -3 0 0 0 rm
lmpop -4 0 0 0 wm
blmpop -5 0 0 0 wbm
zmpop -4 0 0 0 wm
bzmpop -5 0 0 0 wbm
sort -2 1 1 1 wm
sort_ro -2 1 1 1 rm
wait 3 0 0 0 b
`

// Builtin returns the built-in table (builtinCommands).
func Builtin() *Table {
	t := &Table{Cmds: make(map[string]*Info)}
	for _, line := range strings.Split(builtinCommands, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		ci := &Info{Name: f[0]}
		ci.Arity, _ = strconv.Atoi(f[1])
		ci.First, _ = strconv.Atoi(f[2])
		ci.Last, _ = strconv.Atoi(f[3])
		ci.Step, _ = strconv.Atoi(f[4])
		if len(f) > 5 {
			ci.Flags = parseFlagLetters(f[5])
		}
		if ci.First == 0 && ci.Flags&MovableKeys == 0 {
			ci.Flags |= NoKeys
		}
		t.Cmds[ci.Name] = ci
	}
	return t
}

func parseFlagLetters(s string) Flags {
	var fl Flags
	for _, c := range s {
		switch c {
		case 'r':
			fl |= Readonly
		case 'w':
			fl |= Write
		case 'b':
			fl |= Blocking
		case 'm':
			fl |= MovableKeys
		}
	}
	return fl
}

// Spec is one command as reported by a node's COMMAND reply.
type Spec struct {
	Name                    string
	Arity                   int
	Flags                   []string
	FirstKey, LastKey, Step int
	Subcommands             []Spec // Redis 7: "xgroup|create" …
}

// Merge adds the commands reported by a node to the table; the node's view wins over
// the built-in one for key positions and flags.
func (t *Table) Merge(specs []Spec) {
	for _, s := range specs {
		ci := &Info{Name: strings.ToLower(s.Name), Arity: s.Arity, First: s.FirstKey, Last: s.LastKey, Step: s.Step}
		ci.Flags = specFlags(s.Flags)
		ci.Container = len(s.Subcommands) > 0
		for _, sc := range s.Subcommands {
			if t.Sub == nil {
				t.Sub = map[string]Flags{}
			}
			t.Sub[strings.ToLower(sc.Name)] = specFlags(sc.Flags)
		}
		if old, ok := t.Cmds[ci.Name]; ok {
			// Keep what the built-in table knows that older servers do not report
			// (the "blocking" flag appeared in Redis 7), and its write flag where the node
			// reports none (Redis 7 gives container commands such as XGROUP no flags).
			ci.Flags |= old.Flags & (Blocking | MovableKeys)
			if ci.Flags&(Readonly|Write) == 0 {
				ci.Flags |= old.Flags & Write
			}
		}
		if ci.First == 0 && ci.Flags&MovableKeys == 0 {
			ci.Flags |= NoKeys
		}
		t.Cmds[ci.Name] = ci
	}
}

// containerKeyAt2 are container commands whose subcommands (except HELP, and for MEMORY
// all but USAGE) take the key right after the subcommand name.
var containerKeyAt2 = map[string]bool{"object": true, "xinfo": true, "xgroup": true, "memory": true}

// KeyIndexes returns the positions of the keys in args (args[0] is the command name). ok is
// false when the arguments are malformed for a command with movable keys; the node then
// gives the proper error.
func (ci *Info) KeyIndexes(args [][]byte, dst []int) (idx []int, ok bool) {
	idx = dst[:0]
	if ci.First == 0 && len(args) > 2 && containerKeyAt2[ci.Name] {
		// OBJECT ENCODING key, XINFO STREAM key …: the key follows the subcommand.
		var buf [16]byte
		if sub := string(Lower(buf[:], args[1])); sub != "help" && !(ci.Name == "memory" && sub != "usage") {
			return append(idx, 2), true
		}
		return idx, true
	}
	if ci.Flags&MovableKeys != 0 {
		idx, ok = movableKeys(ci.Name, args, idx)
		if !ok {
			idx = idx[:0] // malformed: no positions, never a partial list
		}
		return idx, ok
	}
	if ci.First <= 0 || ci.First >= len(args) {
		return idx, true
	}
	last := ci.Last
	if last < 0 {
		last = len(args) + last
	}
	if last >= len(args) {
		last = len(args) - 1
	}
	step := ci.Step
	if step <= 0 {
		step = 1
	}
	for i := ci.First; i <= last; i += step {
		idx = append(idx, i)
	}
	return idx, true
}

func atoiArg(b []byte) (int, bool) {
	n, err := strconv.Atoi(string(b))
	return n, err == nil
}

// movableKeys finds the keys of commands whose key positions depend on their arguments.
func movableKeys(name string, args [][]byte, idx []int) ([]int, bool) {
	numkeysAt := func(pos, firstKey int) ([]int, bool) {
		if pos >= len(args) {
			return idx, false
		}
		n, ok := atoiArg(args[pos])
		if !ok || n < 0 || firstKey+n > len(args) {
			return idx, false
		}
		for i := 0; i < n; i++ {
			idx = append(idx, firstKey+i)
		}
		return idx, true
	}
	switch name {
	case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro", "blmpop", "bzmpop":
		// CMD script|function|timeout numkeys key …
		return numkeysAt(2, 3)
	case "zunion", "zinter", "zdiff", "zintercard", "sintercard", "lmpop", "zmpop":
		// CMD numkeys key …
		return numkeysAt(1, 2)
	case "zunionstore", "zinterstore", "zdiffstore":
		idx = append(idx, 1)
		return numkeysAt(2, 3)
	case "xread", "xreadgroup":
		for i := 1; i < len(args); i++ {
			if bytes.EqualFold(args[i], []byte("streams")) {
				rest := len(args) - i - 1
				if rest <= 0 || rest%2 != 0 {
					return idx, false
				}
				for j := 0; j < rest/2; j++ {
					idx = append(idx, i+1+j)
				}
				return idx, true
			}
		}
		return idx, false
	case "sort", "sort_ro":
		if len(args) > 1 {
			idx = append(idx, 1)
		}
		for i := 2; i+1 < len(args); i++ {
			if name == "sort" && bytes.EqualFold(args[i], []byte("store")) { // SORT_RO has no STORE: the node answers its syntax error
				idx = append(idx, i+1)
			}
		}
		return idx, true
	case "migrate":
		return idx, false
	}
	// Unknown movable-key command (e.g. a module's): route by its first argument.
	if len(args) > 1 {
		idx = append(idx, 1)
	}
	return idx, true
}

// specFlags converts COMMAND flags into the table's.
func specFlags(flags []string) Flags {
	var fl Flags
	for _, f := range flags {
		switch f {
		case "readonly":
			fl |= Readonly
		case "write":
			fl |= Write
		case "blocking":
			fl |= Blocking
		case "movablekeys":
			fl |= MovableKeys
		case "no_multi":
			fl |= NoMulti
		case "admin":
			fl |= Admin
		}
	}
	return fl
}

// Lower writes the ASCII lower case of name into buf and returns it (a new slice when
// name is longer than buf). The one case-folding of command names.
func Lower(buf []byte, name []byte) []byte {
	if len(name) > len(buf) {
		return bytes.ToLower(name)
	}
	b := buf[:len(name)]
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return b
}
