package proxy

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"sync"
)

// maxScripts bounds the scripts the proxy remembers for NOSCRIPT recovery.
const maxScripts = 10000

// scriptCache remembers the bodies of scripts loaded through the proxy (EVAL, SCRIPT
// LOAD), so that an EVALSHA answered with NOSCRIPT — a master replaced by a replica that
// never saw SCRIPT LOAD, or restarted — is recovered by loading the script and retrying.
type scriptCache struct {
	mu     sync.Mutex
	bodies map[string][]byte
}

func (sc *scriptCache) remember(body []byte) {
	sum := sha1.Sum(body)
	sha := hex.EncodeToString(sum[:])
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.bodies == nil {
		sc.bodies = map[string][]byte{}
	}
	if _, ok := sc.bodies[sha]; ok {
		return
	}
	if len(sc.bodies) >= maxScripts {
		for k := range sc.bodies { // drop an arbitrary one
			delete(sc.bodies, k)
			break
		}
	}
	sc.bodies[sha] = bytes.Clone(body)
}

func (sc *scriptCache) flush() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.bodies = nil
}

func (sc *scriptCache) lookup(sha []byte) ([]byte, bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	b, ok := sc.bodies[string(bytes.ToLower(sha))]
	return b, ok
}

// recoverNoScript handles a NOSCRIPT reply to EVALSHA: if the proxy knows the script, it
// loads it on the node that answered and reports true so the command is sent again.
func (ss *session) recoverNoScript(r *request) bool {
	if r.info == nil || (r.info.Name != "evalsha" && r.info.Name != "evalsha_ro") || len(r.args) < 2 || r.node == nil {
		return false
	}
	body, ok := ss.s.scripts.lookup(r.args[1])
	if !ok {
		return false
	}
	rep := ss.callNode(r.node, []byte("SCRIPT"), []byte("LOAD"), body)
	if len(rep) == 0 || rep[0] == '-' {
		return false
	}
	ss.s.log.Info("reloaded script after NOSCRIPT", "node", r.node.addr, "sha", string(r.args[1]))
	return true
}
