package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// readRESP3 reads one reply and returns it in a canonical text form: type byte and value,
// sets sorted (their order is a hash table's), with unordered also arrays sorted; with
// shapeOnly scalars other than map keys are reduced to their type.
func readRESP3(t testing.TB, br *bufio.Reader, unordered, shapeOnly bool) string {
	t.Helper()
	var read func(key bool) string
	read = func(key bool) string {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (got %q)", err, l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		typ, body := l[0], l[1:]
		switch typ {
		case '$', '=', '!':
			n, _ := strconv.Atoi(body)
			if n < 0 {
				return string(typ) + "-1"
			}
			b := make([]byte, n+2)
			if _, err := io.ReadFull(br, b); err != nil {
				t.Fatal(err)
			}
			if shapeOnly && !key {
				return string(typ)
			}
			return string(typ) + strconv.Quote(string(b[:n]))
		case '*', '~', '%', '>':
			n, _ := strconv.Atoi(body)
			if n < 0 {
				return string(typ) + "-1"
			}
			var el []string
			for i := 0; i < n; i++ {
				if typ == '%' {
					k := read(true)
					el = append(el, k+"=>"+read(false))
				} else {
					el = append(el, read(false))
				}
			}
			if typ == '~' || (unordered && typ == '*') {
				sort.Strings(el)
			}
			return string(typ) + "[" + strings.Join(el, " ") + "]"
		}
		if shapeOnly && !key && typ != '-' && typ != '_' {
			return string(typ)
		}
		return l
	}
	return read(false)
}

var dbStats = regexp.MustCompile(`\$"db\.\d+"=>%\[[^\]]*\] `)

func resp3Cmd(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// TestRESP3RawAgainstReference switches a raw connection to RESP3 on the proxy and on a
// standalone redis-server and compares the replies of commands whose RESP3 form differs
// from RESP2 (maps, sets, doubles, nulls, verbatim strings, transactions).
func TestRESP3RawAgainstReference(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	ref := startReference(t)
	refAddr := ref.Options().Addr
	pc, rc := dialRaw(t, p.addr), dialRaw(t, refAddr)
	ctx := context.Background()
	pcl := p.client(t)
	pre := fmt.Sprintf("{r3-%d}", time.Now().UnixNano())
	k := func(s string) string { return pre + s }
	for _, cl := range []*redis.Client{pcl, ref} {
		cl.FunctionLoad(ctx, "#!lua name=resp3lib\nredis.register_function{function_name='r3f', callback=function() return 1 end, flags={'no-writes'}}")
	}
	t.Cleanup(func() { pcl.FunctionDelete(ctx, "resp3lib") })

	type check struct {
		args       []string
		unordered  bool
		shapeOnly  bool
		wantPrefix string // optional: the proxy's reply must start with it
	}
	checks := []check{
		{args: []string{"HSET", k("h"), "a", "1", "b", "2"}},
		{args: []string{"SADD", k("s1"), "a", "b", "c"}},
		{args: []string{"SADD", k("s2"), "b", "c", "d"}},
		{args: []string{"ZADD", k("z"), "1", "a", "2.5", "b", "3", "c", "4", "d", "5", "e"}},
		{args: []string{"XADD", k("x"), "1-1", "f", "v"}},
		{args: []string{"XGROUP", "CREATE", k("x"), "g", "0"}},
		{args: []string{"GEOADD", k("g"), "13.361389", "38.115556", "Palermo", "15.087269", "37.502669", "Catania"}},
		{args: []string{"SET", k("k"), "v"}},
		{args: []string{"SET", k("a1"), "ohmytext"}},
		{args: []string{"SET", k("a2"), "mynewtext"}},
		{args: []string{"GET", k("missing")}, wantPrefix: "_"},
		{args: []string{"GET", k("k")}},
		{args: []string{"MGET", k("k"), k("missing"), "other" + k("k")}},
		{args: []string{"HGETALL", k("h")}, wantPrefix: "%"},
		{args: []string{"HGETALL", k("none")}},
		{args: []string{"HRANDFIELD", k("h"), "5", "WITHVALUES"}, unordered: true},
		{args: []string{"HINCRBYFLOAT", k("h"), "f", "0.5"}},
		{args: []string{"INCRBYFLOAT", k("f"), "1.5"}},
		{args: []string{"SMEMBERS", k("s1")}, wantPrefix: "~"},
		{args: []string{"SMEMBERS", k("none")}},
		{args: []string{"SINTER", k("s1"), k("s2")}},
		{args: []string{"SUNION", k("s1"), k("s2")}},
		{args: []string{"SDIFF", k("s1"), k("s2")}},
		{args: []string{"SRANDMEMBER", k("s1"), "5"}, unordered: true},
		{args: []string{"SPOP", k("none")}},
		{args: []string{"SMISMEMBER", k("s1"), "a", "z"}},
		{args: []string{"ZSCORE", k("z"), "b"}, wantPrefix: ","},
		{args: []string{"ZSCORE", k("z"), "nope"}},
		{args: []string{"ZINCRBY", k("z"), "1", "a"}},
		{args: []string{"ZADD", k("z"), "INCR", "5", "q"}},
		{args: []string{"ZADD", k("z"), "NX", "INCR", "5", "q"}},
		{args: []string{"ZMSCORE", k("z"), "a", "nope"}},
		{args: []string{"ZRANGE", k("z"), "0", "-1"}},
		{args: []string{"ZRANGE", k("z"), "0", "-1", "WITHSCORES"}},
		{args: []string{"ZREVRANGEBYSCORE", k("z"), "+inf", "-inf", "withscores"}},
		{args: []string{"ZRANDMEMBER", k("z"), "10", "WITHSCORES"}, unordered: true},
		{args: []string{"ZUNION", "2", k("z"), k("z"), "WITHSCORES"}},
		{args: []string{"ZPOPMIN", k("z")}},
		{args: []string{"ZPOPMAX", k("z"), "2"}},
		{args: []string{"ZPOPMIN", k("none")}},
		{args: []string{"BZPOPMIN", k("z"), "1"}},
		{args: []string{"ZMPOP", "1", k("z"), "MIN", "COUNT", "2"}},
		{args: []string{"ZMPOP", "1", k("none"), "MIN"}},
		{args: []string{"BLPOP", k("nolist"), "0.01"}},
		{args: []string{"LPOS", k("nolist"), "x"}},
		{args: []string{"GEOPOS", k("g"), "Palermo", "nope"}},
		{args: []string{"GEODIST", k("g"), "Palermo", "Catania", "km"}},
		{args: []string{"GEOSEARCH", k("g"), "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km", "ASC", "WITHCOORD", "WITHDIST", "WITHHASH"}},
		{args: []string{"GEORADIUS", k("g"), "15", "37", "200", "km", "ASC", "WITHCOORD"}},
		{args: []string{"XREADGROUP", "GROUP", "g", "c1", "COUNT", "1", "STREAMS", k("x"), ">"}},
		{args: []string{"XREAD", "COUNT", "1", "STREAMS", k("x"), "0"}, wantPrefix: "%"},
		{args: []string{"XREAD", "STREAMS", k("nostream"), "0"}},
		{args: []string{"XRANGE", k("x"), "-", "+"}},
		{args: []string{"XINFO", "STREAM", k("x")}},
		{args: []string{"XINFO", "STREAM", k("x"), "FULL"}, shapeOnly: true},
		{args: []string{"XINFO", "GROUPS", k("x")}},
		{args: []string{"XINFO", "CONSUMERS", k("x"), "g"}, shapeOnly: true},
		{args: []string{"LCS", k("a1"), k("a2"), "IDX"}},
		{args: []string{"OBJECT", "ENCODING", k("missing")}},
		{args: []string{"EVAL", "return false", "0"}},
		{args: []string{"EVAL", "return {1, false, 'a'}", "0"}},
		{args: []string{"CONFIG", "GET", "maxmemory-policy"}, wantPrefix: "%"},
		{args: []string{"FUNCTION", "LIST", "LIBRARYNAME", "resp3lib"}},
		{args: []string{"INFO", "keyspace"}, shapeOnly: true, wantPrefix: "="},
		{args: []string{"CLIENT", "INFO"}, shapeOnly: true},
		{args: []string{"PUBSUB", "NUMSUB", "nochannel"}},
		{args: []string{"MEMORY", "STATS"}, shapeOnly: true},
		{args: []string{"MULTI"}},
		{args: []string{"HGETALL", k("h")}},
		{args: []string{"ZSCORE", k("z"), "e"}},
		{args: []string{"GET", k("missing")}},
		{args: []string{"SMEMBERS", k("s1")}},
		{args: []string{"EXEC"}},
	}
	hello := func(r *rawConn) string {
		r.send(resp3Cmd("HELLO", "3"))
		return readRESP3(t, r.br, false, true)
	}
	gotHello, wantHello := hello(pc), hello(rc)
	if gotHello != wantHello || !strings.HasPrefix(gotHello, "%[") {
		t.Fatalf("HELLO 3:\n proxy:     %s\n reference: %s", gotHello, wantHello)
	}
	for _, c := range checks {
		pc.send(resp3Cmd(c.args...))
		rc.send(resp3Cmd(c.args...))
		got := readRESP3(t, pc.br, c.unordered, c.shapeOnly)
		want := readRESP3(t, rc.br, c.unordered, c.shapeOnly)
		if c.args[0] == "MEMORY" { // db.<n> is there on the nodes that hold keys
			got, want = dbStats.ReplaceAllString(got, ""), dbStats.ReplaceAllString(want, "")
		}
		if got != want {
			t.Errorf("%q:\n proxy:     %s\n reference: %s", c.args, got, want)
		}
		if c.wantPrefix != "" && !strings.HasPrefix(got, c.wantPrefix) {
			t.Errorf("%q: proxy answered %s, want a %s reply", c.args, got, c.wantPrefix)
		}
	}
	// HELLO without a version reports 3; HELLO 2 goes back and answers in RESP2.
	pc.send(resp3Cmd("HELLO"))
	if got := readRESP3(t, pc.br, false, false); !strings.Contains(got, `$"proto"=>:3`) {
		t.Errorf("HELLO after HELLO 3: %s", got)
	}
	pc.send(resp3Cmd("HELLO", "2"))
	if got := readRESP3(t, pc.br, false, false); !strings.HasPrefix(got, "*[") || !strings.Contains(got, `$"proto" :2`) {
		t.Errorf("HELLO 2: %s", got)
	}
	pc.send(resp3Cmd("GET", k("missing")))
	if got := pc.line(); got != "$-1" {
		t.Errorf("GET of a missing key after HELLO 2: %q, want $-1", got)
	}
	pc.send(resp3Cmd("HELLO", "4"))
	if got := pc.line(); got != "-NOPROTO unsupported protocol version" {
		t.Errorf("HELLO 4: %q", got)
	}
}

// TestRESP3PubSubRaw: in RESP3 confirmations and messages are push frames and a
// subscribed client runs any command, as on a standalone Redis.
func TestRESP3PubSubRaw(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	ref := startReference(t)
	pub := p.client(t)
	ctx := context.Background()
	for _, x := range []struct {
		addr string
		pub  *redis.Client
	}{{p.addr, pub}, {ref.Options().Addr, ref}} {
		r := dialRaw(t, x.addr)
		r.send(resp3Cmd("HELLO", "3"))
		readRESP3(t, r.br, false, true)
		r.send(resp3Cmd("SUBSCRIBE", "r3chan"))
		if got := readRESP3(t, r.br, false, false); got != `>[$"subscribe" $"r3chan" :1]` {
			t.Errorf("%s: SUBSCRIBE: %s", x.addr, got)
		}
		r.send(resp3Cmd("GET", "r3-missing-{x}"))
		if got := readRESP3(t, r.br, false, false); got != "_" {
			t.Errorf("%s: GET while subscribed: %s", x.addr, got)
		}
		r.send(resp3Cmd("PING"))
		if got := readRESP3(t, r.br, false, false); got != "+PONG" {
			t.Errorf("%s: PING while subscribed: %s", x.addr, got)
		}
		if err := x.pub.Publish(ctx, "r3chan", "hi").Err(); err != nil {
			t.Fatal(err)
		}
		if got := readRESP3(t, r.br, false, false); got != `>[$"message" $"r3chan" $"hi"]` {
			t.Errorf("%s: message: %s", x.addr, got)
		}
		r.send(resp3Cmd("UNSUBSCRIBE"))
		if got := readRESP3(t, r.br, false, false); got != `>[$"unsubscribe" $"r3chan" :0]` {
			t.Errorf("%s: UNSUBSCRIBE: %s", x.addr, got)
		}
	}
}

// TestRESP3GoRedis drives the proxy with go-redis v9 in its default protocol (RESP3),
// next to the reference in RESP3.
func TestRESP3GoRedis(t *testing.T) {
	c := sharedCluster(t)
	p := startProxy(t, c, nil)
	ref := startReference(t)
	ctx := context.Background()
	pcl := p.client(t, func(o *redis.Options) { o.Protocol = 3 })
	rcl := redis.NewClient(&redis.Options{Addr: ref.Options().Addr, DisableIdentity: true})
	t.Cleanup(func() { rcl.Close() })
	if got, err := pcl.Do(ctx, "CLIENT", "INFO").Text(); err != nil || !strings.Contains(got, " resp=3 ") {
		t.Fatalf("go-redis does not speak RESP3 to the proxy: %q %v", got, err)
	}
	k := fmt.Sprintf("{gr3-%d}", time.Now().UnixNano())
	for _, cl := range []*redis.Client{pcl, rcl} {
		cl.HSet(ctx, k+"h", "a", "1", "b", "2")
		cl.SAdd(ctx, k+"s", "x", "y")
		cl.ZAdd(ctx, k+"z", redis.Z{Score: 1.5, Member: "m1"}, redis.Z{Score: 2, Member: "m2"})
		cl.XAdd(ctx, &redis.XAddArgs{Stream: k + "x", ID: "1-1", Values: []string{"f", "v"}})
	}
	check := func(name string, f func(cl *redis.Client) (any, error)) {
		t.Helper()
		got, gerr := f(pcl)
		want, werr := f(rcl)
		if fmt.Sprint(gerr) != fmt.Sprint(werr) || !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n proxy:     %#v %v\n reference: %#v %v", name, got, gerr, want, werr)
		}
	}
	check("HGetAll", func(cl *redis.Client) (any, error) { return cl.HGetAll(ctx, k+"h").Result() })
	check("Do HGETALL", func(cl *redis.Client) (any, error) { return cl.Do(ctx, "HGETALL", k+"h").Result() })
	check("SMembers", func(cl *redis.Client) (any, error) {
		v, err := cl.SMembers(ctx, k+"s").Result()
		sort.Strings(v)
		return v, err
	})
	check("ZRangeWithScores", func(cl *redis.Client) (any, error) { return cl.ZRangeWithScores(ctx, k+"z", 0, -1).Result() })
	check("ZScore", func(cl *redis.Client) (any, error) { return cl.ZScore(ctx, k+"z", "m1").Result() })
	check("Get missing", func(cl *redis.Client) (any, error) { return cl.Get(ctx, k+"missing").Result() })
	check("MGet", func(cl *redis.Client) (any, error) { return cl.MGet(ctx, k+"missing", "other"+k).Result() })
	check("XRead", func(cl *redis.Client) (any, error) {
		return cl.XRead(ctx, &redis.XReadArgs{Streams: []string{k + "x", "0"}, Count: 1}).Result()
	})
	check("ConfigGet", func(cl *redis.Client) (any, error) { return cl.ConfigGet(ctx, "maxmemory-policy").Result() })
	check("TxPipelined", func(cl *redis.Client) (any, error) {
		var hg *redis.MapStringStringCmd
		var zs *redis.FloatCmd
		_, err := cl.TxPipelined(ctx, func(pp redis.Pipeliner) error {
			hg = pp.HGetAll(ctx, k+"h")
			zs = pp.ZScore(ctx, k+"z", "m2")
			return nil
		})
		return []any{hg.Val(), zs.Val()}, err
	})
	if v, err := pcl.Info(ctx, "server").Result(); err != nil || !strings.Contains(v, "redis_version:") {
		t.Errorf("Info: %q %v", v, err)
	}

	// Pub/Sub: go-redis subscribes in RESP3 and receives push messages.
	sub := pcl.Subscribe(ctx, "gr3chan")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pcl.Publish(ctx, "gr3chan", "hello").Err(); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msg, err := sub.ReceiveMessage(mctx)
	if err != nil || msg.Channel != "gr3chan" || msg.Payload != "hello" {
		t.Fatalf("ReceiveMessage: %+v %v", msg, err)
	}
}
