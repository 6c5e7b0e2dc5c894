package config

import (
	"fmt"
	"strings"
	"time"
)

// KeyDoc documents one configuration key for the manual page
// redis-carp-proxy.conf(5), which tools/mkman generates from KeyDocs.
type KeyDoc struct {
	Name    string
	Value   string // the value's syntax, e.g. "host:port", "duration", "master | replica"
	Type    string // integer, duration, size, boolean, choice, address, string, file, list
	Default string // as the sample configuration shows it; "" when empty
	Doc     string // the one-line description of the key table
	Range   string // what the parser accepts beyond the type, e.g. "1 to 1048576"; may be ""
}

// syntax is how a key's value is written, for KeyDocs; kind says which checks
// TestKeySyntaxMatchesParser makes against the key's parser.
type syntax struct {
	kind  string // one of the kind* constants
	value string // shown after the key in the manual page; for choices, derived
	typ   string // the type the manual page names, when not kind
}

// Kinds of values. The parser of every key of a kind refuses what that kind refuses
// (a test checks), so that the manual page's type of a key is the parser's.
const (
	kindInt      = "integer"  // strconv.Atoi, within a range
	kindDuration = "duration" // time.ParseDuration, at least a minimum
	kindSize     = "size"     // ParseSize
	kindBool     = "boolean"  // yes/no (true/false, on/off, 1/0)
	kindChoice   = "choice"   // one of a fixed set of words
	kindHostPort = "address"  // host:port
	kindIP       = "ip"       // an IPv4 or IPv6 address
	kindString   = "string"   // any text
	kindFile     = "file"     // a path; any text is accepted
	kindList     = "list"     // a list or composite value with its own parser
)

var (
	synInt      = syntax{kindInt, "number", ""}
	synDuration = syntax{kindDuration, "duration", ""}
	synSize     = syntax{kindSize, "size", ""}
	synBool     = syntax{kindBool, "yes | no", ""}
	synChoice   = syntax{kindChoice, "", ""}
	synHostPort = syntax{kindHostPort, "host:port", ""}
	synFile     = syntax{kindFile, "file", ""}
	synIf       = syntax{kindString, "interface", ""}
	synOutLimit = syntax{kindList, "hard soft duration", "three values"}
)

// keySyntax gives every key of keys its value syntax. A key missing here fails
// TestEveryKeyHasSyntax, so a new key cannot reach the manual page undocumented.
var keySyntax = map[string]syntax{
	"listen":                            synHostPort,
	"cluster-seeds":                     {kindList, "host:port,...", ""},
	"maxclients":                        synInt,
	"client-pipeline-depth":             synInt,
	"client-idle-timeout":               synDuration,
	"tcp-keepalive":                     synDuration,
	"proto-max-bulk-len":                synSize,
	"proto-max-multibulk-len":           synInt,
	"proto-inline-max-size":             synInt,
	"client-query-buffer-limit":         synSize,
	"unauthenticated-max-bulk-len":      synSize,
	"unauthenticated-max-multibulk-len": synInt,
	"client-auth-timeout":               synDuration,
	"auth-max-failures":                 synInt,
	"requirepass-file":                  synFile,
	"users-file":                        synFile,
	"backend-password-file":             synFile,
	"admin-listen-public":               synBool,
	"pf-max-src-conn":                   synInt,
	"pf-max-src-conn-rate":              {kindList, "connections/seconds", "a rate"},
	"requirepass":                       {kindString, "password", ""},
	"users":                             {kindList, "name:password[:readonly] ...", ""},
	"read-from":                         synChoice,
	"enable-flushall":                   synBool,
	"enable-admin-commands":             synBool,
	"announce-address":                  synHostPort,
	"shutdown-timeout":                  synDuration,
	"client-output-buffer-limit":        synOutLimit,
	"client-output-buffer-limit-pubsub": synOutLimit,
	"maxmemory-clients":                 synSize,
	"deny-commands":                     {kindList, "command ...", ""},
	"tls-port":                          {kindInt, "port", ""},
	"tls-cert-file":                     synFile,
	"tls-key-file":                      synFile,
	"tls-ca-cert-file":                  synFile,
	"tls-auth-clients":                  synBool,
	"event-loops":                       synInt,
	"backend-connections":               synInt,
	"backend-connect-timeout":           synDuration,
	"backend-read-timeout":              synDuration,
	"backend-queue-depth":               synInt,
	"blocking-connections":              synInt,
	"tracking-table-max-keys":           synInt,
	"slotmap-refresh-interval":          synDuration,
	"slotmap-fast-refresh-interval":     synDuration,
	"backend-busy-timeout":              synDuration,
	"backend-suspect-after":             synDuration,
	"max-redirects":                     synInt,
	"redirect-budget":                   synDuration,
	"tryagain-retries":                  synInt,
	"tryagain-backoff":                  synDuration,
	"backend-user":                      {kindString, "user", ""},
	"backend-password":                  {kindString, "password", ""},
	"tls-cluster":                       synBool,
	"backend-tls-cert-file":             synFile,
	"backend-tls-key-file":              synFile,
	"backend-tls-ca-cert-file":          synFile,
	"admin-listen":                      synHostPort,
	"admin-pprof":                       synBool,
	"slowlog-log-slower-than":           synDuration,
	"slowlog-max-len":                   synInt,
	"hotkeys-sample-rate":               synInt,
	"hotkeys-window":                    synDuration,
	"log-level":                         synChoice,
	"log-format":                        synChoice,
	"carp-mode":                         synChoice,
	"carp-interface":                    synIf,
	"carp-vhid":                         {kindInt, "vhid", ""},
	"vip":                               {kindIP, "address", "IP address"},
	"carp-poll-interval":                synDuration,
	"drain-timeout":                     synDuration,
	"handoff-socket":                    synFile,
	"handoff-wait":                      synDuration,
	"reload-restart":                    synBool,
	"carp-demote":                       synBool,
	"carp-demote-after":                 synDuration,
	"carp-health-file":                  synFile,
	"vips":                              {kindList, "address[@vhid],...", ""},
	"carp-host-index":                   synInt,
	"carp-hosts":                        synInt,
	"carp-peers":                        {kindList, "address[,address6]", "IP addresses"},
	"carp-advskew-step":                 synInt,
	"carp-pass-file":                    synFile,
	"handover-peers":                    {kindList, "host:port,...", ""},
	"handover-on-stop":                  synBool,
	"handover-timeout":                  synDuration,
	"pf-anchor":                         {kindString, "name", ""},
	"pf-table":                          {kindString, "name", ""},
	"pf-allow-file":                     synFile,
	"pf-anchor-file":                    synFile,
	"pf-internal-interface":             synIf,
	"pfsync-interface":                  synIf,
	"pfsync-peer":                       {kindString, "address", ""},
	"pf-lb-network":                     {kindList, "address[/prefix],...", ""},
	"redis-ports":                       {kindList, "low:high", "port range"},
	"pf-log":                            synBool,
	"pf-reload":                         synBool,
}

// KeyDocs returns the documentation of every key, in the order of the key table (the
// order of the sample configuration). The value syntax comes from keySyntax; the choices
// of a choice key and the range of a number or duration are read from the key's own
// parser, so the manual page states what the parser enforces.
func KeyDocs() []KeyDoc {
	out := make([]KeyDoc, 0, len(keys))
	for _, k := range keys {
		syn := keySyntax[k.name]
		d := KeyDoc{Name: k.name, Value: syn.value, Type: syn.kind, Default: k.defValue(), Doc: k.doc}
		if syn.typ != "" {
			d.Type = syn.typ
		}
		switch syn.kind {
		case kindChoice:
			d.Value = strings.Join(choices(k), " | ")
		case kindInt:
			if lo, hi, ok := intRange(k); ok {
				d.Range = fmt.Sprintf("%d to %d", lo, hi)
			}
		case kindDuration:
			if m := durationMin(k); m > 0 {
				d.Range = "at least " + m.String()
			}
		}
		out = append(out, d)
	}
	return out
}

// choices returns the words a choice key accepts, from its parser's refusal
// ("want one of a, b, c").
func choices(k key) []string {
	err := k.set(Default(), "\x00")
	if err == nil {
		return nil
	}
	_, list, ok := strings.Cut(err.Error(), "want one of ")
	if !ok {
		return nil
	}
	list, _, _ = strings.Cut(list, ", got ")
	return strings.Split(list, ", ")
}

// intRange returns the bounds an integer key's parser enforces, from its refusal of a
// number below any bound ("N out of range [lo, hi]").
func intRange(k key) (lo, hi int, ok bool) {
	err := k.set(Default(), "-2147483648")
	if err == nil {
		return 0, 0, false
	}
	_, r, found := strings.Cut(err.Error(), "out of range ")
	if !found {
		return 0, 0, false
	}
	if _, err := fmt.Sscanf(r, "[%d, %d]", &lo, &hi); err != nil {
		return 0, 0, false
	}
	return lo, hi, true
}

// durationMin returns the smallest non-zero duration a duration key's parser accepts,
// from its refusal of a negative one ("-1ns is below the minimum M").
func durationMin(k key) time.Duration {
	err := k.set(Default(), "-1ns")
	if err == nil {
		return 0
	}
	_, m, found := strings.Cut(err.Error(), "below the minimum ")
	if !found {
		return 0
	}
	d, perr := time.ParseDuration(m)
	if perr != nil {
		return 0
	}
	return d
}
