package e2e

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// module is the import path prefix of the whole workspace.
const module = "example.com/rampart/"

// TestArchitecture guards the layout the README describes: services never
// import one another, the platform and the gateway import no service, the
// contracts import nothing of ours but themselves, and only the platform
// exports packages: a service or the gateway keeps its code under cmd/ and
// internal/.
func TestArchitecture(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "testdata" || rel == "tools" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		checkFile(t, filepath.ToSlash(rel), path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func checkFile(t *testing.T, rel, path string) {
	t.Helper()
	owner := ownerOf(rel)
	if (strings.HasPrefix(owner, "services/") || owner == "gateway") &&
		!strings.HasPrefix(strings.TrimPrefix(rel, owner+"/"), "cmd/") &&
		!strings.HasPrefix(strings.TrimPrefix(rel, owner+"/"), "internal/") {
		t.Errorf("%s: a %s package outside cmd/ and internal/; only platform/ exports code", rel, owner)
	}
	file, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
	if err != nil {
		t.Errorf("%s: %v", rel, err)
		return
	}
	for _, spec := range file.Imports {
		imported, _ := strconv.Unquote(spec.Path.Value)
		if !strings.HasPrefix(imported, module) {
			continue
		}
		if reason := forbidden(owner, ownerOf(strings.TrimPrefix(imported, module))); reason != "" {
			t.Errorf("%s imports %s: %s", rel, imported, reason)
		}
	}
}

// ownerOf names the part of the workspace a path belongs to: "platform",
// "gateway", "proto", "e2e", or "services/<name>".
func ownerOf(rel string) string {
	parts := strings.SplitN(rel, "/", 3)
	if parts[0] == "services" && len(parts) > 1 {
		return "services/" + parts[1]
	}
	return parts[0]
}

// forbidden says why from may not import to, or "" when it may.
func forbidden(from, to string) string {
	switch {
	case from == to:
		return ""
	case from == "proto":
		return "the contracts depend on nothing of ours"
	case strings.HasPrefix(to, "services/"):
		return "no code depends on a service; services talk over the network"
	case to == "gateway":
		return "no code depends on the gateway"
	case to == "e2e":
		return "nothing depends on the tests"
	}
	return ""
}

func TestArchitectureRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		from, to string
		allowed  bool
	}{
		{"services/order", "platform/workload", true},
		{"services/order", "proto/user/v1", true},
		{"services/order", "services/order/internal/orderstore", true},
		{"services/order", "services/user/internal/userstore", false},
		{"platform", "services/order/internal/orderrpc", false},
		{"platform", "gateway/internal/proxy", false},
		{"gateway", "services/user/cmd/user", false},
		{"gateway", "platform/policy", true},
		{"proto", "platform/policy", false},
		{"e2e", "platform/devstack", true},
	}
	for _, tt := range tests {
		got := forbidden(ownerOf(tt.from), ownerOf(tt.to)) == ""
		if got != tt.allowed {
			t.Errorf("%s importing %s: allowed = %v, want %v", tt.from, tt.to, got, tt.allowed)
		}
	}
}
