// Package envconfig fills a configuration struct from environment
// variables, so that every binary is configured the same way: a struct
// with working defaults, overridden by variables with the binary's prefix.
//
// A field takes part when it has an `env` tag naming its variable without
// the prefix: with prefix "ORDER", `env:"GRPC_ADDR"` reads ORDER_GRPC_ADDR.
// Supported field types are string, bool, int, float64, time.Duration,
// slog.Level, and any type implementing encoding.TextUnmarshaler (such as
// secret.String). A variable that is set but cannot be parsed is an error
// naming the variable; one that is unset leaves the default alone.
package envconfig

import (
	"encoding"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Load overrides the tagged fields of the struct dst points to with the
// environment variables prefix_TAG that are set.
func Load(prefix string, dst any) error {
	return load(prefix, dst, os.LookupEnv)
}

func load(prefix string, dst any, lookup func(string) (string, bool)) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("envconfig: want a pointer to a struct, got %T", dst)
	}
	v = v.Elem()
	var errs []error
	for i := range v.NumField() {
		field := v.Type().Field(i)
		tag := field.Tag.Get("env")
		if tag == "" || !field.IsExported() {
			continue
		}
		name := strings.ToUpper(prefix) + "_" + tag
		raw, ok := lookup(name)
		if !ok {
			continue
		}
		if err := set(v.Field(i), raw); err != nil {
			errs = append(errs, fmt.Errorf("reading %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	levelType    = reflect.TypeFor[slog.Level]()
)

func set(field reflect.Value, raw string) error {
	switch field.Type() {
	case levelType:
		var level slog.Level
		if err := level.UnmarshalText([]byte(raw)); err != nil {
			return err
		}
		field.Set(reflect.ValueOf(level))
		return nil
	case durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return err
		}
		field.SetInt(int64(d))
		return nil
	}
	if text, ok := reflect.TypeAssert[encoding.TextUnmarshaler](field.Addr()); ok {
		return text.UnmarshalText([]byte(raw))
	}
	switch field.Kind() {
	case reflect.String:
		field.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return err
		}
		field.SetBool(b)
	case reflect.Int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return err
		}
		field.SetInt(int64(n))
	case reflect.Float64:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return err
		}
		field.SetFloat(f)
	default:
		return fmt.Errorf("envconfig: unsupported field type %s", field.Type())
	}
	return nil
}

// Attrs returns the tagged fields of the struct cfg as log attributes
// keyed by their variable names, for logging the effective configuration
// once at start-up. Values print through their String methods, so a
// secret.String prints redacted.
func Attrs(prefix string, cfg any) []slog.Attr {
	v := reflect.Indirect(reflect.ValueOf(cfg))
	var attrs []slog.Attr
	for i := range v.NumField() {
		field := v.Type().Field(i)
		tag := field.Tag.Get("env")
		if tag == "" || !field.IsExported() {
			continue
		}
		value := v.Field(i).Interface()
		if d, ok := value.(time.Duration); ok {
			value = d.String() // "5m0s", not nanoseconds
		}
		attrs = append(attrs, slog.Any(strings.ToUpper(prefix)+"_"+tag, value))
	}
	return attrs
}
