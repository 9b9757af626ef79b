package tilt

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"example.com/rampart/platform/devstack"
)

// mounts describes what a container sees under its mount points: the
// files of Secrets and ConfigMaps, and directories whose content comes at
// run time (empty directories, CSI volumes, Secrets not in the render).
type mounts struct {
	files map[string]bool
	dirs  []string
	// missing lists the Secrets and ConfigMaps mounted but not rendered.
	missing []string
}

func (m mounts) has(file string) bool {
	if m.files[file] {
		return true
	}
	return slices.ContainsFunc(m.dirs, func(dir string) bool {
		return file == dir || strings.HasPrefix(file, dir+"/")
	})
}

// renderedKeys maps "Secret/name" and "ConfigMap/name" to the keys of each
// Secret and ConfigMap among the rendered objects.
func renderedKeys(objects []object) map[string][]string {
	data := map[string][]string{}
	for _, o := range objects {
		switch v := o.Object.(type) {
		case *corev1.Secret:
			for k := range v.Data {
				data["Secret/"+v.Name] = append(data["Secret/"+v.Name], k)
			}
		case *corev1.ConfigMap:
			for k := range v.Data {
				data["ConfigMap/"+v.Name] = append(data["ConfigMap/"+v.Name], k)
			}
		}
	}
	return data
}

// mountsOf returns what container c of w sees, given the rendered objects.
func mountsOf(w workload, c corev1.Container, objects []object) mounts {
	data := renderedKeys(objects)
	m := mounts{files: map[string]bool{}}
	for _, vm := range c.VolumeMounts {
		i := slices.IndexFunc(w.pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
		if i < 0 && slices.Contains(w.claims, vm.Name) {
			m.dirs = append(m.dirs, vm.MountPath)
			continue
		}
		if i < 0 {
			m.missing = append(m.missing, "volume "+vm.Name)
			continue
		}
		v := w.pod.Spec.Volumes[i]
		var ref string
		var items []corev1.KeyToPath
		switch {
		case v.Secret != nil:
			ref, items = "Secret/"+v.Secret.SecretName, v.Secret.Items
		case v.ConfigMap != nil:
			ref, items = "ConfigMap/"+v.ConfigMap.Name, v.ConfigMap.Items
		default:
			m.dirs = append(m.dirs, vm.MountPath)
			continue
		}
		keys, rendered := data[ref]
		if !rendered {
			m.missing = append(m.missing, ref)
		}
		switch {
		case len(items) > 0:
			for _, item := range items {
				if rendered && !slices.Contains(keys, item.Key) {
					m.missing = append(m.missing, ref+" key "+item.Key)
				}
				m.files[path.Join(vm.MountPath, item.Path)] = true
			}
		case rendered:
			for _, k := range keys {
				m.files[path.Join(vm.MountPath, k)] = true
			}
		default:
			m.dirs = append(m.dirs, vm.MountPath)
		}
	}
	return m
}

// namedFiles returns the files a container's configuration points at:
// environment values that are absolute paths or unix:// sockets, and the
// argument after --config.
func namedFiles(c corev1.Container) []string {
	var files []string
	for _, e := range c.Env {
		switch {
		case strings.HasPrefix(e.Value, "/"):
			files = append(files, e.Value)
		case strings.HasPrefix(e.Value, "unix://"):
			files = append(files, strings.TrimPrefix(e.Value, "unix://"))
		}
	}
	for i, arg := range c.Args {
		if arg == "--config" && i+1 < len(c.Args) {
			files = append(files, c.Args[i+1])
		}
	}
	return files
}

func TestContainersFindTheFilesTheyAreGiven(t *testing.T) {
	t.Parallel()
	for _, dir := range kustomizations(t) {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			objects := renderOverlay(t, dir)
			for _, w := range workloadsOf(objects) {
				for _, c := range w.pod.Spec.Containers {
					m := mountsOf(w, c, objects)
					for _, f := range namedFiles(c) {
						if !m.has(f) {
							t.Errorf("%s: container %s is given %s, which no volume provides", w, c.Name, f)
						}
					}
					// The dev overlay is complete: it mounts nothing it does not render.
					if dir == "overlays/dev" && len(m.missing) > 0 {
						t.Errorf("%s: container %s mounts what the overlay lacks: %q", w, c.Name, m.missing)
					}
				}
			}
		})
	}
}

func TestSPIREOverlayTakesIdentitiesFromTheWorkloadAPI(t *testing.T) {
	t.Parallel()
	objects := renderOverlay(t, "overlays/spire")
	got := map[string]string{}
	for _, w := range workloadsOf(objects) {
		c := w.pod.Spec.Containers[0]
		var socket string
		var svidEnv []string
		for _, e := range c.Env {
			if e.Name == "SPIFFE_ENDPOINT_SOCKET" {
				socket = e.Value
			}
			if strings.Contains(e.Name, "_SVID_") || strings.HasSuffix(e.Name, "_TRUST_BUNDLE") {
				svidEnv = append(svidEnv, e.Name)
			}
		}
		svidVolume := slices.ContainsFunc(w.pod.Spec.Volumes, func(v corev1.Volume) bool {
			return v.Secret != nil && strings.HasSuffix(v.Secret.SecretName, "-svid")
		})
		csi := slices.ContainsFunc(w.pod.Spec.Volumes, func(v corev1.Volume) bool {
			return v.CSI != nil && v.CSI.Driver == "csi.spiffe.io" && v.CSI.ReadOnly != nil && *v.CSI.ReadOnly
		})
		got[w.name] = fmt.Sprintf("socket=%t svid files=%t csi=%t",
			socket != "", len(svidEnv) > 0 || svidVolume, csi)
	}
	want := map[string]string{"nats": "socket=false svid files=true csi=false"}
	for _, name := range devstack.Workloads {
		want[name] = "socket=true svid files=false csi=true"
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %s, want %s", name, got[name], w)
		}
	}
}
