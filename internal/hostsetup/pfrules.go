package hostsetup

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/rcconf"
)

// pfRulesSources are the files in which rc.subr's load_rc_config finds pf_rules for
// rc.d/pf, in the order it reads them (the last assignment wins): the defaults
// (pf_rules="/etc/pf.conf"), rc_conf_files (/etc/rc.conf, /etc/rc.conf.local), then
// rc.conf.d/pf under /etc and under local_startup's /usr/local/etc, each a file or a
// directory of files. libexec/rc/rc.d/pf then runs `pfctl -f "$pf_rules"`.
var pfRulesSources = []string{"/etc/defaults/rc.conf", "/etc/rc.conf", "/etc/rc.conf.local",
	RCConfDir + "/pf", "/usr/local/etc/rc.conf.d/pf"}

// pfRules returns the rule file rc.d/pf loads: pf_rules as rc.conf sets it, PFConf when
// nothing does. A value setup cannot resolve without running sh (a variable, a relative
// path) is an error rather than a guess: setup would edit a file pf never loads.
func (s *Setup) pfRules() (string, error) {
	rules, from := PFConf, ""
	for _, src := range pfRulesSources {
		files := []string{src}
		if st, err := os.Stat(s.path(src)); err == nil && st.IsDir() {
			ents, err := os.ReadDir(s.path(src))
			if err != nil {
				return "", fmt.Errorf("setup: %w", err)
			}
			files = files[:0]
			for _, e := range ents {
				if !e.IsDir() {
					files = append(files, path.Join(src, e.Name()))
				}
			}
			sort.Strings(files) // the order of sh's glob
		}
		for _, f := range files {
			b, err := os.ReadFile(s.path(f))
			if os.IsNotExist(err) {
				continue
			}
			if err != nil {
				return "", fmt.Errorf("setup: %w", err)
			}
			if v, ok := rcconf.Get(string(b), "pf_rules"); ok {
				rules, from = v, f
			}
		}
	}
	if !filepath.IsAbs(rules) || strings.ContainsAny(rules, "$`\\*?[ \t") || path.Clean(rules) != rules {
		return "", fmt.Errorf("setup: pf_rules=%q in %s: %w", rules, from, ErrPFRules)
	}
	return rules, nil
}
