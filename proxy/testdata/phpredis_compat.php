<?php
// phpredis compatibility check, run by TestPhpredisCompatibility against the proxy:
//   php phpredis_compat.php HOST PORT PREFIX
// Prints one "ok <step>" line per step; on the first failure prints "FAIL <step>: <why>"
// and exits 1. Go publishes on PREFIX:in while this runs and listens on PREFIX:out.
[$_, $host, $port, $p] = $argv;

function check($step, $cond, $why = '') {
    if (!$cond) {
        fwrite(STDOUT, "FAIL $step: $why\n");
        exit(1);
    }
    fwrite(STDOUT, "ok $step\n");
}

$r = new Redis();
check('connect', $r->connect($host, (int)$port, 2.0));
check('ping', $r->ping() !== false);
check('client setname', $r->client('setname', 'php-compat') === true);
check('client getname', $r->client('getname') === 'php-compat');

// Strings over many slots.
$kv = [];
for ($i = 0; $i < 50; $i++) {
    $kv["$p:s:$i"] = "v$i";
}
check('mset', $r->mSet($kv) === true);
$keys = array_keys($kv);
check('mget', $r->mGet($keys) === array_values($kv), json_encode($r->mGet($keys)));
check('set/get', $r->set("$p:x", 'hello') && $r->get("$p:x") === 'hello');
check('incr', $r->incrBy("$p:n", 5) === 5 && $r->incr("$p:n") === 6);
check('exists', $r->exists($keys) === 50, var_export($r->exists($keys), true));
check('del', $r->del(array_slice($keys, 0, 10)) === 10);
check('setex/ttl', $r->setex("$p:t", 100, 'x') && $r->ttl("$p:t") > 90);

// Hashes and lists.
check('hmset', $r->hMSet("$p:h", ['a' => '1', 'b' => '2']) === true);
check('hgetall', $r->hGetAll("$p:h") == ['a' => '1', 'b' => '2']);
check('hincrby', $r->hIncrBy("$p:h", 'a', 10) === 11);
check('rpush/lrange', $r->rPush("$p:l", 'a', 'b', 'c') === 3 && $r->lRange("$p:l", 0, -1) === ['a', 'b', 'c']);

// Pipeline over many slots: replies in order.
$pipe = $r->multi(Redis::PIPELINE);
for ($i = 10; $i < 50; $i++) {
    $pipe->get("$p:s:$i");
}
$pipe->incr("$p:n");
$res = $pipe->exec();
check('pipeline', count($res) === 41 && $res[0] === 'v10' && $res[39] === 'v49' && $res[40] === 7, json_encode($res));

// MULTI/EXEC in one slot; across slots the transaction is refused.
$tx = $r->multi();
$tx->set("{{$p}}:a", '1');
$tx->incr("{{$p}}:a");
$tx->get("{{$p}}:a");
$res = $tx->exec();
check('multi/exec', $res === [true, 2, '2'], json_encode($res));
$crossErr = '';
try {
    $tx = $r->multi();
    $tx->set("$p:cross1", '1');
    $tx->set("$p:cross2", '1');
    $tx->exec();
} catch (RedisException $e) {
    $crossErr = $e->getMessage();
    $r->discard();
}
check('multi crossslot refused', strpos($crossErr, 'CROSSSLOT') === 0, $crossErr);
check('crossslot wrote nothing', $r->exists("$p:cross1") === 0);
check('watch', $r->watch("{{$p}}:a") === true);
$r->set("{{$p}}:a", 'changed');  // same connection: still aborts the transaction
$tx = $r->multi();
$tx->incr("{{$p}}:a");
check('watch aborts', $tx->exec() === false);

// Scripting and SCAN.
check('eval', $r->eval("return redis.call('GET', KEYS[1])", ["$p:x"], 1) === 'hello');
$sha = $r->script('load', "return ARGV[1]");
check('evalsha', $r->evalSha($sha, ['hi'], 0) === 'hi');
$r->setOption(Redis::OPT_SCAN, Redis::SCAN_RETRY);
$seen = [];
$it = null;
while ($batch = $r->scan($it, "$p:s:*", 7)) {
    foreach ($batch as $k) {
        $seen[$k] = true;
    }
}
check('scan', count($seen) === 40, count($seen) . ' keys');
check('dbsize', $r->dbSize() >= 40);
$info = $r->info();
check('info', isset($info['redis_version']) && isset($info['connected_clients']));

// Pub/Sub: publish to Go's subscriber, then receive what Go publishes.
check('publish', $r->publish("$p:out", 'from php') >= 0);
$sub = new Redis();
$sub->connect($host, (int)$port, 2.0);
$sub->setOption(Redis::OPT_READ_TIMEOUT, 10);
$got = null;
try {
    // phpredis leaves its subscribe loop only on an error: close the connection.
    $sub->subscribe(["$p:in"], function ($redis, $chan, $msg) use (&$got) {
        $got = $msg;
        $redis->close();
    });
} catch (RedisException $e) {
}
check('subscribe', $got !== null && strpos($got, 'from go') === 0, var_export($got, true));
fwrite(STDOUT, "ALL OK\n");
