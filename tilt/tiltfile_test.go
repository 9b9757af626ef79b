package tilt

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"

	"example.com/rampart/platform/devstack"
)

// repoRoot is the repository's root, where the Tiltfile lives; Tilt
// resolves every relative path from there.
const repoRoot = ".."

// call is one recorded call of a Tilt built-in, with its arguments by
// parameter name.
type call struct {
	fn   string
	args map[string]starlark.Value
}

func (c call) str(param string) string {
	s, _ := starlark.AsString(c.args[param])
	return s
}

func (c call) strings(param string) []string {
	v, ok := c.args[param]
	if !ok {
		return nil
	}
	if s, ok := starlark.AsString(v); ok {
		return []string{s}
	}
	var out []string
	if iter, ok := v.(starlark.Iterable); ok {
		it := iter.Iterate()
		defer it.Done()
		var x starlark.Value
		for it.Next(&x) {
			if s, ok := starlark.AsString(x); ok {
				out = append(out, s)
			} else {
				out = append(out, x.String())
			}
		}
	}
	return out
}

// recorder stands in for Tilt: it offers the built-ins the Tiltfile may
// call, with Tilt's parameter names (a misspelled or unknown keyword
// fails the load, as in Tilt), records every call and runs nothing.
type recorder struct {
	flags map[string]bool
	// render turns a kustomize directory into YAML, as Tilt's kustomize()
	// would.
	render func(dir string) (string, error)
	calls  []call
}

// Tilt's built-ins, with their parameters as Tilt's API reference names
// them; a trailing "?" marks an optional one.
var builtinParams = map[string][]string{
	"local_resource": {"name", "cmd", "deps?", "trigger_mode?", "resource_deps?", "ignore?",
		"auto_init?", "serve_cmd?", "cmd_bat?", "serve_cmd_bat?", "allow_parallel?", "links?",
		"labels?", "env?", "serve_env?", "readiness_probe?", "dir?", "serve_dir?"},
	"probe": {"initial_delay_secs?", "timeout_secs?", "period_secs?", "success_threshold?",
		"failure_threshold?", "exec?", "http_get?", "tcp_socket?"},
	"http_get_action":   {"port", "host?", "scheme?", "path?"},
	"tcp_socket_action": {"port", "host?"},
	"exec_action":       {"command"},
	"link":              {"url", "name?"},
	"local":             {"command", "quiet?", "command_bat?", "echo_off?", "env?", "dir?", "stdin?"},
	"custom_build": {"ref", "command", "deps", "tag?", "disable_push?", "skips_local_docker?",
		"live_update?", "match_in_env_vars?", "ignore?", "entrypoint?", "command_bat_val?",
		"outputs_image_ref_to?", "command_bat?", "image_deps?", "env?", "dir?"},
	"k8s_yaml":  {"yaml", "allow_duplicates?"},
	"kustomize": {"pathToDir", "kustomize_bin?", "flags?"},
	"k8s_resource": {"workload?", "new_name?", "port_forwards?", "extra_pod_selectors?",
		"trigger_mode?", "resource_deps?", "objects?", "auto_init?", "pod_readiness?", "links?",
		"labels?", "discovery_strategy?"},
	"config.define_bool": {"name", "args?", "usage?"},
	"config.parse":       {},
}

func (r *recorder) builtin(name string) *starlark.Builtin {
	params := builtinParams[name]
	return starlark.NewBuiltin(name, func(_ *starlark.Thread, _ *starlark.Builtin,
		args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		values := make([]starlark.Value, len(params))
		pairs := make([]any, 0, 2*len(params))
		for i, p := range params {
			pairs = append(pairs, p, &values[i])
		}
		if err := starlark.UnpackArgs(name, args, kwargs, pairs...); err != nil {
			return nil, err
		}
		c := call{fn: name, args: map[string]starlark.Value{}}
		for i, p := range params {
			if values[i] != nil {
				c.args[strings.TrimSuffix(p, "?")] = values[i]
			}
		}
		r.calls = append(r.calls, c)
		return r.result(c)
	})
}

// result is what a built-in returns: a struct of its arguments for the
// values Tilt builds (probes, links), the flags for config.parse, YAML for
// kustomize, and None otherwise. local() runs nothing and returns "".
func (r *recorder) result(c call) (starlark.Value, error) {
	switch c.fn {
	case "probe", "http_get_action", "tcp_socket_action", "exec_action", "link":
		fields := starlark.StringDict{"kind": starlark.String(c.fn)}
		maps.Copy(fields, starlark.StringDict(c.args))
		return starlarkstruct.FromStringDict(starlarkstruct.Default, fields), nil
	case "config.parse":
		d := starlark.NewDict(len(r.flags))
		for k, v := range r.flags {
			if err := d.SetKey(starlark.String(k), starlark.Bool(v)); err != nil {
				return nil, err
			}
		}
		return d, nil
	case "kustomize":
		out, err := r.render(c.str("pathToDir"))
		return starlark.String(out), err
	case "local":
		return starlark.String(""), nil
	}
	return starlark.None, nil
}

func (r *recorder) predeclared() starlark.StringDict {
	d := starlark.StringDict{
		"struct":              starlark.NewBuiltin("struct", starlarkstruct.Make),
		"TRIGGER_MODE_AUTO":   starlark.String("TRIGGER_MODE_AUTO"),
		"TRIGGER_MODE_MANUAL": starlark.String("TRIGGER_MODE_MANUAL"),
		"config": &starlarkstruct.Module{Name: "config", Members: starlark.StringDict{
			"define_bool": r.builtin("config.define_bool"),
			"parse":       r.builtin("config.parse"),
		}},
	}
	for name := range builtinParams {
		if !strings.Contains(name, ".") {
			d[name] = r.builtin(name)
		}
	}
	return d
}

// loadTiltfile runs the Tiltfile at path with the given flags, as
// `tilt up -- --flag` would, and returns the calls it made.
func loadTiltfile(t *testing.T, path string, flags map[string]bool) ([]call, error) {
	t.Helper()
	r := &recorder{flags: flags, render: func(dir string) (string, error) {
		return renderYAML(t, filepath.Join(repoRoot, dir))
	}}
	// Tilt's dialect: top-level if and for, sets, while, recursion.
	opts := &syntax.FileOptions{Set: true, While: true, TopLevelControl: true,
		GlobalReassign: true, Recursion: true}
	thread := &starlark.Thread{Name: "Tiltfile", Print: func(*starlark.Thread, string) {}}
	_, err := starlark.ExecFileOptions(opts, thread, path, nil, r.predeclared())
	return r.calls, err
}

// tiltfileModel is what the checks need from the recorded calls.
type tiltfileModel struct {
	resources map[string]call // local_resource and k8s_resource, by name
	builds    map[string]call // custom_build, by image name
	calls     []call
}

func model(calls []call) tiltfileModel {
	m := tiltfileModel{resources: map[string]call{}, builds: map[string]call{}, calls: calls}
	for _, c := range calls {
		switch c.fn {
		case "local_resource":
			m.resources[c.str("name")] = c
		case "k8s_resource":
			m.resources[c.str("workload")] = c
		case "custom_build":
			m.builds[c.str("ref")] = c
		}
	}
	return m
}

// commonProblems are what every mode must get right: every dependency
// names a defined resource, without cycles, and every path named exists.
func (m tiltfileModel) commonProblems(root string) []string {
	var problems []string
	for _, name := range slices.Sorted(maps.Keys(m.resources)) {
		for _, dep := range m.resources[name].strings("resource_deps") {
			if _, ok := m.resources[dep]; !ok {
				problems = append(problems, fmt.Sprintf("%s depends on undefined resource %q", name, dep))
			}
		}
	}
	if cycle := m.cycle(); cycle != nil {
		problems = append(problems, "dependency cycle: "+strings.Join(cycle, " -> "))
	}
	for _, c := range m.calls {
		for _, p := range namedPaths(c) {
			if _, err := os.Stat(filepath.Join(root, p)); err != nil {
				problems = append(problems, fmt.Sprintf("%s names missing path %s", c.fn, p))
			}
		}
	}
	return problems
}

// cycle returns a dependency cycle among the resources, or nil.
func (m tiltfileModel) cycle() []string {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var path []string
	var visit func(name string) []string
	visit = func(name string) []string {
		switch state[name] {
		case visiting:
			return append(slices.Clone(path[slices.Index(path, name):]), name)
		case done:
			return nil
		}
		state[name] = visiting
		path = append(path, name)
		for _, dep := range m.resources[name].strings("resource_deps") {
			if c := visit(dep); c != nil {
				return c
			}
		}
		path = path[:len(path)-1]
		state[name] = done
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(m.resources)) {
		if c := visit(name); c != nil {
			return c
		}
	}
	return nil
}

// namedPaths returns the repository paths a call names: the arguments
// Tilt reads as paths, and the words of its commands that name a package
// or file of the repository ("./...", "tilt/...", "images/..."). Paths
// the build writes (bin/, .build/) are not among them.
func namedPaths(c call) []string {
	var paths []string
	switch c.fn {
	case "local_resource", "custom_build":
		paths = append(paths, c.strings("deps")...)
	case "kustomize":
		paths = append(paths, c.str("pathToDir"))
	}
	for _, param := range []string{"cmd", "serve_cmd", "command"} {
		for _, cmd := range c.strings(param) {
			for word := range strings.FieldsSeq(cmd) {
				if strings.HasPrefix(word, "./") || strings.HasPrefix(word, "tilt/") ||
					strings.HasPrefix(word, "images/") {
					paths = append(paths, word)
				}
			}
		}
	}
	return paths
}

// localProblems checks the default mode against the local stack: NATS and
// every workload are resources that serve, probed where `make run` serves
// them, and the gateway is linked.
func (m tiltfileModel) localProblems(root string) []string {
	problems := m.commonProblems(root)
	ports := devstack.DefaultPorts
	wantProbe := map[string]string{
		"nats":    fmt.Sprintf("tcp_socket_action:%d", ports.NATS),
		"user":    fmt.Sprintf("http_get_action:%d/readyz", ports.UserAdmin),
		"order":   fmt.Sprintf("http_get_action:%d/readyz", ports.OrderAdmin),
		"payment": fmt.Sprintf("http_get_action:%d/readyz", ports.PaymentAdmin),
		"gateway": fmt.Sprintf("http_get_action:%d/readyz", ports.GatewayAdmin),
	}
	for _, name := range append([]string{"nats"}, devstack.Workloads...) {
		r, ok := m.resources[name]
		switch {
		case !ok || r.fn != "local_resource":
			problems = append(problems, "no local resource for "+name)
			continue
		case r.str("serve_cmd") == "":
			problems = append(problems, name+" serves nothing")
		}
		if got := probeTarget(r.args["readiness_probe"]); got != wantProbe[name] {
			problems = append(problems, fmt.Sprintf("%s is probed at %q, want %q", name, got, wantProbe[name]))
		}
	}
	gatewayURL := devstack.DefaultConfig().GatewayURL()
	if !slices.Contains(linkURLs(m.resources["gateway"]), gatewayURL) {
		problems = append(problems, "the gateway resource does not link "+gatewayURL)
	}
	return problems
}

// probeTarget describes a recorded probe as "action:port[path]".
func probeTarget(v starlark.Value) string {
	probe, ok := v.(*starlarkstruct.Struct)
	if !ok {
		return ""
	}
	for _, field := range []string{"http_get", "tcp_socket", "exec"} {
		action, err := probe.Attr(field)
		if err != nil || action == nil {
			continue
		}
		a, ok := action.(*starlarkstruct.Struct)
		if !ok {
			continue
		}
		kind, _ := a.Attr("kind")
		port, _ := a.Attr("port")
		target := fmt.Sprintf("%s:%v", starlarkStr(kind), port)
		if path, err := a.Attr("path"); err == nil && path != nil {
			target += starlarkStr(path)
		}
		return target
	}
	return ""
}

func starlarkStr(v starlark.Value) string {
	s, _ := starlark.AsString(v)
	return s
}

func linkURLs(c call) []string {
	var urls []string
	if list, ok := c.args["links"].(*starlark.List); ok {
		for i := range list.Len() {
			if l, ok := list.Index(i).(*starlarkstruct.Struct); ok {
				url, _ := l.Attr("url")
				urls = append(urls, starlarkStr(url))
			}
		}
	}
	return urls
}

// k8sProblems checks the Kubernetes mode against the rendered overlay:
// every workload of the manifests is a resource, every image they run is
// built by the Tiltfile, and nothing is built that they do not run.
func (m tiltfileModel) k8sProblems(root string, rendered []object) []string {
	problems := m.commonProblems(root)
	images := map[string]bool{}
	workloadNames := map[string]bool{}
	for _, w := range workloadsOf(rendered) {
		workloadNames[w.name] = true
		for _, c := range w.pod.Spec.Containers {
			images[strings.Split(c.Image, ":")[0]] = true
		}
	}
	for _, name := range append([]string{"nats"}, devstack.Workloads...) {
		if r, ok := m.resources[name]; !ok || r.fn != "k8s_resource" {
			problems = append(problems, "no Kubernetes resource for "+name)
		}
	}
	for name, r := range m.resources {
		if r.fn == "k8s_resource" && !workloadNames[name] {
			problems = append(problems, "k8s_resource names "+name+", which the manifests do not define")
		}
	}
	for _, image := range slices.Sorted(maps.Keys(images)) {
		if _, ok := m.builds[image]; !ok {
			problems = append(problems, "nothing builds image "+image)
		}
	}
	for _, ref := range slices.Sorted(maps.Keys(m.builds)) {
		if !images[ref] {
			problems = append(problems, "image "+ref+" is built but runs nowhere")
		}
	}
	if !slices.ContainsFunc(m.calls, func(c call) bool { return c.fn == "k8s_yaml" }) {
		problems = append(problems, "no manifests are applied")
	}
	return problems
}

func TestTiltfile(t *testing.T) {
	t.Parallel()
	rendered := renderOverlay(t, "overlays/dev")
	tests := []struct {
		name     string
		flags    map[string]bool
		problems func(tiltfileModel) []string
	}{
		{"local", map[string]bool{}, func(m tiltfileModel) []string { return m.localProblems(repoRoot) }},
		{"k8s", map[string]bool{"k8s": true}, func(m tiltfileModel) []string {
			return m.k8sProblems(repoRoot, rendered)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			calls, err := loadTiltfile(t, filepath.Join(repoRoot, "Tiltfile"), tt.flags)
			if err != nil {
				t.Fatalf("loading the Tiltfile: %v", err)
			}
			for _, p := range tt.problems(model(calls)) {
				t.Error(p)
			}
		})
	}
}

// TestTiltfileChecksCatchMistakes feeds the checks Tiltfiles with one
// mistake each, to show that they would catch it in the real one.
func TestTiltfileChecksCatchMistakes(t *testing.T) {
	t.Parallel()
	valid := map[string]string{
		"nats": `local_resource('nats', cmd='', serve_cmd='bin/rampart nats',
			readiness_probe=probe(tcp_socket=tcp_socket_action(4222)))`,
	}
	for name, port := range map[string]int{"user": 9101, "order": 9102, "payment": 9103, "gateway": 9104} {
		valid[name] = fmt.Sprintf(`local_resource('%s', cmd='', serve_cmd='x',
			readiness_probe=probe(http_get=http_get_action(%d, host='127.0.0.1', path='/readyz')))`,
			name, port)
	}
	valid["gateway"] = strings.Replace(valid["gateway"], "cmd=''",
		"cmd='', links=[link('http://127.0.0.1:8080')]", 1)
	tiltfile := func(replace map[string]string) string {
		var lines []string
		for _, name := range slices.Sorted(maps.Keys(valid)) {
			line, ok := replace[name]
			if !ok {
				line = valid[name]
			}
			lines = append(lines, line)
		}
		return strings.Join(lines, "\n") + "\n"
	}
	// edit returns the replacement of name's line with from replaced by to.
	edit := func(name, from, to string) map[string]string {
		return map[string]string{name: strings.Replace(valid[name], from, to, 1)}
	}
	cycle := edit("order", "cmd=''", "cmd='', resource_deps=['user']")
	cycle["user"] = strings.Replace(valid["user"], "cmd=''", "cmd='', resource_deps=['order']", 1)
	tests := []struct {
		name    string
		replace map[string]string
		want    string // a substring of a problem or of the load error
	}{
		{"valid", nil, ""},
		{"a workload without a resource", map[string]string{"order": ""}, "no local resource for order"},
		{"a dependency on an undefined resource", edit("order", "cmd=''", "cmd='', resource_deps=['natz']"),
			`depends on undefined resource "natz"`},
		{"a dependency cycle", cycle, "dependency cycle"},
		{"a missing path", edit("user", "cmd=''", "cmd='go build ./services/usr/cmd/user', deps=['platform']"),
			"missing path ./services/usr"},
		{"a probe on the wrong port", edit("payment", "9103", "9102"), "payment is probed at"},
		{"a resource that serves nothing", edit("user", "serve_cmd='x'", "serve_cmd=''"), "user serves nothing"},
		{"no link to the gateway", edit("gateway", "8080", "8081"), "does not link"},
		{"a misspelled keyword", edit("user", "serve_cmd=", "serve_comd="), "unexpected keyword argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "Tiltfile")
			if err := os.WriteFile(path, []byte(tiltfile(tt.replace)), 0o600); err != nil {
				t.Fatal(err)
			}
			calls, err := loadTiltfile(t, path, nil)
			var problems []string
			if err != nil {
				problems = []string{err.Error()}
			} else {
				problems = model(calls).localProblems(repoRoot)
			}
			if tt.want == "" {
				if len(problems) > 0 {
					t.Fatalf("problems in a valid Tiltfile: %q", problems)
				}
				return
			}
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Fatalf("problems %q, want one containing %q", problems, tt.want)
			}
		})
	}
}
