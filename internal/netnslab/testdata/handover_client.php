<?php
// A PHP-FPM-like phpredis client for the planned-handover lab: every "request" takes the
// process's persistent connection with pconnect (phpredis checks it is still alive and
// reconnects if the server closed it), then CLIENT INFO (its addr= is this end of the
// connection: it changes on a reconnect, and not when a restart hands the connection to a
// new proxy process), SET and GET. Bounded in time and
// iterations. Prints one JSON line: answered iterations, the times (unix seconds) of
// failures and reconnects, the gaps over 20 ms between two answers, the first errors.
// Usage: php handover_client.php HOST PORT PREFIX SECONDS
[$_, $host, $port, $prefix, $seconds] = $argv;
$deadline = microtime(true) + (float)$seconds;
$ok = 0; $failed = []; $reconnects = []; $lastId = null; $lastOK = null; $gaps = [];
$errors = [];
for ($i = 0; $i < 200000 && microtime(true) < $deadline; $i++) {
    try {
        $r = new Redis();
        $r->pconnect($host, (int)$port, 0.5, "handover");
        $r->setOption(Redis::OPT_READ_TIMEOUT, 0.5);
        preg_match('/(?:^| )addr=(\S+)/', (string)$r->rawCommand("CLIENT", "INFO"), $m);
        $id = $m[1] ?? "?";
        if ($lastId !== null && $id !== $lastId) {
            $reconnects[] = microtime(true);
        }
        $lastId = $id;
        $k = "$prefix:{" . $i . "}";
        $v = "v$i";
        if ($r->set($k, $v) !== true) {
            throw new Exception("SET did not answer OK");
        }
        if ($r->get($k) !== $v) {
            throw new Exception("GET did not read back");
        }
        $now = microtime(true);
        if ($lastOK !== null) {
            $gaps[] = [$lastOK, $now - $lastOK];
        }
        $lastOK = $now;
        $ok++;
    } catch (Throwable $e) {
        $failed[] = microtime(true);
        if (count($errors) < 5) {
            $errors[] = $e->getMessage();
        }
        usleep(10000);
    }
    usleep(2000);
}
// Only the gaps over 20 ms, with when they started (unix seconds).
$gaps = array_values(array_filter($gaps, fn($g) => $g[1] > 0.02));
echo json_encode(["ok" => $ok, "failed" => $failed, "reconnects" => $reconnects,
    "gaps" => $gaps, "errors" => $errors]), "\n";
