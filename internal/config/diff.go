package config

import (
	"fmt"
	"reflect"
	"strings"
)

// fieldOverrides names the Config field of keys whose name does not fold to the field
// name (dashes removed, case ignored).
var fieldOverrides = map[string]string{
	"client-query-buffer-limit":         "QueryBufferLimit",
	"slotmap-refresh-interval":          "SlotmapRefresh",
	"slotmap-fast-refresh-interval":     "SlotmapFastRefresh",
	"slowlog-log-slower-than":           "SlowlogSlowerThan",
	"client-output-buffer-limit":        "OutputLimit",
	"client-output-buffer-limit-pubsub": "OutputLimitPubSub",
	"tls-port":                          "TLSPort",
}

// field returns the Config field that holds key name.
func field(c *Config, name string) (reflect.Value, bool) {
	v := reflect.ValueOf(c).Elem()
	if f, ok := fieldOverrides[name]; ok {
		fv := v.FieldByName(f)
		return fv, fv.IsValid()
	}
	want := strings.ReplaceAll(name, "-", "")
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if strings.EqualFold(t.Field(i).Name, want) {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// Diff returns the names of the keys whose values differ between a and b, in
// documentation order.
func Diff(a, b *Config) []string {
	var out []string
	for _, k := range keys {
		fa, ok1 := field(a, k.name)
		fb, ok2 := field(b, k.name)
		if !ok1 || !ok2 || !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			out = append(out, k.name)
		}
	}
	return out
}

// CopyKey sets key name of dst to its value in src.
func CopyKey(dst, src *Config, name string) error {
	fd, ok1 := field(dst, name)
	fs, ok2 := field(src, name)
	if !ok1 || !ok2 {
		return fmt.Errorf("config: no field for key %q", name)
	}
	fd.Set(fs)
	return nil
}
