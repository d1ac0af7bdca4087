package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Flatten lists every setting of c as name, value pairs in file order,
// named as in the file ("listen.addr", "ttl.0.kind", "users.1.role"), the
// values as TOML would write them (durations "5s", lists comma-separated).
// Secrets are the caller's to mask.
func Flatten(c Config) []string {
	var out []string
	flatten(&out, "", reflect.ValueOf(c))
	return out
}

func flatten(out *[]string, name string, v reflect.Value) {
	if d, ok := v.Interface().(Duration); ok {
		*out = append(*out, name, d.Duration.String())
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			flatten(out, join(name, tag), v.Field(i))
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Struct {
			for i := 0; i < v.Len(); i++ {
				flatten(out, join(name, strconv.Itoa(i)), v.Index(i))
			}
			return
		}
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = fmt.Sprint(v.Index(i).Interface())
		}
		*out = append(*out, name, strings.Join(parts, ","))
	case reflect.Map:
		var parts []string
		for _, k := range v.MapKeys() {
			parts = append(parts, fmt.Sprint(k.Interface())+"="+fmt.Sprint(v.MapIndex(k).Interface()))
		}
		sort.Strings(parts)
		*out = append(*out, name, strings.Join(parts, ","))
	default:
		*out = append(*out, name, fmt.Sprint(v.Interface()))
	}
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}
