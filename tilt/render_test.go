package tilt

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"example.com/rampart/platform/devstack"
)

// object is one rendered Kubernetes object, decoded into its API type.
type object struct {
	runtime.Object
	gvk             schema.GroupVersionKind
	name, namespace string
}

func (o object) String() string { return fmt.Sprintf("%s %s/%s", o.gvk.Kind, o.namespace, o.name) }

// The API types the manifests may use. A kind missing here fails the
// decoding, so that a new kind of workload cannot slip past the policy
// checks, which know only these.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strict decodes YAML into the API types and refuses unknown and
// duplicated fields, as `kubectl apply --validate=strict` would.
var strict = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// decodeStrict decodes one object.
func decodeStrict(doc []byte) (object, error) {
	obj, gvk, err := strict.Decode(doc, nil, nil)
	if err != nil {
		return object{}, err
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return object{}, err
	}
	return object{Object: obj, gvk: *gvk, name: m.GetName(), namespace: m.GetNamespace()}, nil
}

// preparedCopy copies tilt/ to a temporary directory and writes a fresh
// dev PKI and signing keys where the dev overlay reads them, as
// `tilt up -- --k8s` does before rendering. It returns the copy's path.
func preparedCopy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(".")); err != nil {
		t.Fatalf("copying tilt/: %v", err)
	}
	cfg := devstack.DefaultConfig()
	cfg.Dir = filepath.Join(dir, "overlays", "dev", "secrets")
	if err := devstack.Prepare(cfg); err != nil {
		t.Fatalf("preparing the dev PKI: %v", err)
	}
	return dir
}

// renderYAML renders the kustomization at path, relative to the
// repository root and inside tilt/, with the kustomize Go API.
func renderYAML(t *testing.T, path string) (string, error) {
	t.Helper()
	rel, err := filepath.Rel(filepath.Join(repoRoot, "tilt"), path)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "", fmt.Errorf("%s is not inside tilt/", path)
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resources, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(preparedCopy(t), rel))
	if err != nil {
		return "", fmt.Errorf("rendering %s: %w", path, err)
	}
	out, err := resources.AsYaml()
	return string(out), err
}

// renderOverlay renders the kustomization at dir, relative to tilt/, and
// decodes every object strictly; any failure fails the test.
func renderOverlay(t *testing.T, dir string) []object {
	t.Helper()
	out, err := renderYAML(t, filepath.Join(repoRoot, "tilt", dir))
	if err != nil {
		t.Fatal(err)
	}
	var objects []object
	for doc := range bytes.SplitSeq([]byte(out), []byte("\n---\n")) {
		obj, err := decodeStrict(doc)
		if err != nil {
			t.Fatalf("%s: decoding\n%s\n: %v", dir, doc, err)
		}
		objects = append(objects, obj)
	}
	return objects
}

// kustomizations lists what can be deployed: the base and every overlay.
// Components are rendered through the overlays that use them.
func kustomizations(t *testing.T) []string {
	t.Helper()
	overlays, err := filepath.Glob(filepath.Join("overlays", "*", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dirs := []string{"base"}
	for _, o := range overlays {
		dirs = append(dirs, filepath.Dir(o))
	}
	return dirs
}

func TestEveryKustomizationRendersToValidObjects(t *testing.T) {
	t.Parallel()
	dirs := kustomizations(t)
	for _, want := range []string{"base", "overlays/dev", "overlays/spire"} {
		if !slices.Contains(dirs, want) {
			t.Fatalf("kustomizations %q, want %s among them", dirs, want)
		}
	}
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			if objects := renderOverlay(t, dir); len(objects) == 0 {
				t.Fatal("renders no object")
			}
		})
	}
}

func TestDecodingIsStrict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		doc     string
		wantErr bool
	}{
		{"valid", "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\nspec:\n  ports:\n    - port: 80\n", false},
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\nspec:\n  portz: []\n", true},
		{"misplaced field", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\n  replicas: 2\n", true},
		{"duplicated field", "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  name: b\n", true},
		{"unknown kind", "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: a\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := decodeStrict([]byte(tt.doc)); (err != nil) != tt.wantErr {
				t.Fatalf("decodeStrict: %v, want error: %t", err, tt.wantErr)
			}
		})
	}
}
