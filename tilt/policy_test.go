package tilt

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/reflect/protoregistry"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"example.com/rampart/platform/devstack"
	"example.com/rampart/platform/policy"

	// The method policies the network policies must follow.
	_ "example.com/rampart/proto/order/v1"
	_ "example.com/rampart/proto/payment/v1"
	_ "example.com/rampart/proto/user/v1"
)

// workload is an object that runs pods.
type workload struct {
	kind, name, namespace string
	pod                   *corev1.PodTemplateSpec
	selector              *metav1.LabelSelector
	claims                []string // a StatefulSet's volume claim templates
}

func (w workload) String() string { return w.kind + " " + w.name }

// workloadsOf returns the objects that run pods. The decoding admits no
// other kind that does.
func workloadsOf(objects []object) []workload {
	var out []workload
	for _, o := range objects {
		switch v := o.Object.(type) {
		case *appsv1.Deployment:
			out = append(out, workload{"Deployment", v.Name, v.Namespace, &v.Spec.Template, v.Spec.Selector, nil})
		case *appsv1.StatefulSet:
			w := workload{"StatefulSet", v.Name, v.Namespace, &v.Spec.Template, v.Spec.Selector, nil}
			for _, c := range v.Spec.VolumeClaimTemplates {
				w.claims = append(w.claims, c.Name)
			}
			out = append(out, w)
		case *appsv1.DaemonSet:
			out = append(out, workload{"DaemonSet", v.Name, v.Namespace, &v.Spec.Template, v.Spec.Selector, nil})
		case *appsv1.ReplicaSet:
			out = append(out, workload{"ReplicaSet", v.Name, v.Namespace, &v.Spec.Template, v.Spec.Selector, nil})
		case *corev1.Pod:
			out = append(out, workload{"Pod", v.Name, v.Namespace,
				&corev1.PodTemplateSpec{ObjectMeta: v.ObjectMeta, Spec: v.Spec}, nil, nil})
		}
	}
	return out
}

// podViolations returns what lets a container of w run as root, write its
// root filesystem, gain privileges, or run without probes or limits.
func podViolations(w workload) []string {
	var out []string
	spec := w.pod.Spec
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		out = append(out, w.String()+": shares the host's network, PID or IPC namespace")
	}
	podSC := spec.SecurityContext
	if podSC == nil {
		podSC = &corev1.PodSecurityContext{}
	}
	var containers []corev1.Container
	containers = append(containers, spec.InitContainers...)
	containers = append(containers, spec.Containers...)
	for i, c := range containers {
		for _, v := range containerViolations(c, podSC, i < len(spec.InitContainers)) {
			out = append(out, w.String()+": "+v)
		}
	}
	return out
}

// containerViolations returns what lets container c, in a pod whose
// security context is podSC, run as root, write its root filesystem, gain
// privileges, or run without probes (unless it is an init container) or
// limits.
func containerViolations(c corev1.Container, podSC *corev1.PodSecurityContext, init bool) []string {
	var out []string
	bad := func(format string, args ...any) {
		out = append(out, fmt.Sprintf(format, args...))
	}
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	nonRoot := pick(sc.RunAsNonRoot, podSC.RunAsNonRoot)
	uid := pick(sc.RunAsUser, podSC.RunAsUser)
	switch {
	case nonRoot == nil || !*nonRoot:
		bad("container %s may run as root: runAsNonRoot is not true", c.Name)
	case uid != nil && *uid == 0:
		bad("container %s runs as user 0", c.Name)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		bad("container %s may write its root filesystem", c.Name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		bad("container %s may escalate its privileges", c.Name)
	}
	if sc.Privileged != nil && *sc.Privileged {
		bad("container %s is privileged", c.Name)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		bad("container %s keeps the default capabilities", c.Name)
	} else if len(sc.Capabilities.Add) > 0 {
		bad("container %s adds capabilities %v", c.Name, sc.Capabilities.Add)
	}
	seccomp := pick(sc.SeccompProfile, podSC.SeccompProfile)
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		bad("container %s runs without the RuntimeDefault seccomp profile", c.Name)
	}
	if !init && (c.ReadinessProbe == nil || c.LivenessProbe == nil) {
		bad("container %s lacks a readiness or liveness probe", c.Name)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Limits[r]; !ok {
			bad("container %s has no %s limit", c.Name, r)
		}
		if _, ok := c.Resources.Requests[r]; !ok {
			bad("container %s has no %s request", c.Name, r)
		}
	}
	return out
}

// pick returns the container's setting, else the pod's.
func pick[T any](container, pod *T) *T {
	if container != nil {
		return container
	}
	return pod
}

// coverageViolations returns the workloads that no NetworkPolicy of their
// own selects for both directions, no Service fronts, or no
// PodDisruptionBudget protects.
func coverageViolations(objects []object) []string {
	var out []string
	for _, w := range workloadsOf(objects) {
		podLabels := labels.Set(w.pod.Labels)
		var ownIngress, ownEgress, service, budget bool
		for _, o := range objects {
			if o.namespace != w.namespace {
				continue
			}
			switch v := o.Object.(type) {
			case *networkingv1.NetworkPolicy:
				if len(v.Spec.PodSelector.MatchLabels) == 0 && len(v.Spec.PodSelector.MatchExpressions) == 0 {
					continue // a policy of the whole namespace is no workload's own
				}
				if selects(&v.Spec.PodSelector, podLabels) {
					ownIngress = ownIngress || slices.Contains(policyTypes(v), networkingv1.PolicyTypeIngress)
					ownEgress = ownEgress || slices.Contains(policyTypes(v), networkingv1.PolicyTypeEgress)
				}
			case *corev1.Service:
				service = service || (len(v.Spec.Selector) > 0 &&
					labels.SelectorFromSet(v.Spec.Selector).Matches(podLabels))
			case *policyv1.PodDisruptionBudget:
				budget = budget || selects(v.Spec.Selector, podLabels)
			}
		}
		if !ownIngress || !ownEgress {
			out = append(out, w.String()+" is not covered by a NetworkPolicy of its own for ingress and egress")
		}
		if !service {
			out = append(out, w.String()+" has no Service")
		}
		if !budget {
			out = append(out, w.String()+" has no PodDisruptionBudget")
		}
	}
	return out
}

func selects(selector *metav1.LabelSelector, set labels.Set) bool {
	if selector == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(selector)
	return err == nil && s.Matches(set)
}

// policyTypes returns the directions a policy isolates, with the API's
// defaults when it names none.
func policyTypes(p *networkingv1.NetworkPolicy) []networkingv1.PolicyType {
	if len(p.Spec.PolicyTypes) > 0 {
		return p.Spec.PolicyTypes
	}
	types := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	if len(p.Spec.Egress) > 0 {
		types = append(types, networkingv1.PolicyTypeEgress)
	}
	return types
}

// network evaluates the NetworkPolicies of the rendered objects the way
// the API defines them, for the pods of the rendered workloads.
type network struct {
	policies   []*networkingv1.NetworkPolicy
	namespaces map[string]labels.Set
	pods       []pod
}

type pod struct {
	name, namespace string
	labels          labels.Set
	ports           map[string]int32 // container ports by name
}

// outside stands for a client beyond the cluster.
var outside = netip.MustParseAddr("203.0.113.10")

func newNetwork(objects []object) network {
	n := network{namespaces: map[string]labels.Set{}}
	for _, o := range objects {
		switch v := o.Object.(type) {
		case *networkingv1.NetworkPolicy:
			n.policies = append(n.policies, v)
		case *corev1.Namespace:
			set := labels.Set{"kubernetes.io/metadata.name": v.Name}
			maps.Copy(set, v.Labels)
			n.namespaces[v.Name] = set
		}
	}
	for _, w := range workloadsOf(objects) {
		p := pod{name: w.name, namespace: w.namespace, labels: w.pod.Labels, ports: map[string]int32{}}
		for _, c := range w.pod.Spec.Containers {
			for _, port := range c.Ports {
				p.ports[port.Name] = port.ContainerPort
			}
		}
		n.pods = append(n.pods, p)
	}
	return n
}

// flows lists every connection the policies allow between the pods, as
// "source -> destination:port", and from outside the cluster.
func (n network) flows() []string {
	var out []string
	for _, dst := range n.pods {
		for _, portName := range slices.Sorted(maps.Keys(dst.ports)) {
			if n.ingressAllows(dst, nil, portName) {
				out = append(out, fmt.Sprintf("outside -> %s:%s", dst.name, portName))
			}
			for _, src := range n.pods {
				if n.ingressAllows(dst, &src, portName) && n.egressAllows(src, &dst, portName, 0) {
					out = append(out, fmt.Sprintf("%s -> %s:%s", src.name, dst.name, portName))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// selecting returns the policies of p's namespace that select p and
// isolate it in direction.
func (n network) selecting(p pod, direction networkingv1.PolicyType) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, np := range n.policies {
		if np.Namespace == p.namespace && selects(&np.Spec.PodSelector, p.labels) &&
			slices.Contains(policyTypes(np), direction) {
			out = append(out, np)
		}
	}
	return out
}

// ingressAllows reports whether dst admits src (nil: outside) on its port.
func (n network) ingressAllows(dst pod, src *pod, portName string) bool {
	policies := n.selecting(dst, networkingv1.PolicyTypeIngress)
	return len(policies) == 0 || slices.ContainsFunc(policies, func(np *networkingv1.NetworkPolicy) bool {
		return slices.ContainsFunc(np.Spec.Ingress, func(rule networkingv1.NetworkPolicyIngressRule) bool {
			return n.portsMatch(rule.Ports, dst, portName) && n.peersMatch(rule.From, np.Namespace, src)
		})
	})
}

// egressAllows reports whether src may reach dst (nil: an address
// outside the cluster, on TCP port outsidePort) on dst's named port.
func (n network) egressAllows(src pod, dst *pod, portName string, outsidePort int32) bool {
	policies := n.selecting(src, networkingv1.PolicyTypeEgress)
	return len(policies) == 0 || slices.ContainsFunc(policies, func(np *networkingv1.NetworkPolicy) bool {
		return slices.ContainsFunc(np.Spec.Egress, func(rule networkingv1.NetworkPolicyEgressRule) bool {
			var portOK bool
			if dst != nil {
				portOK = n.portsMatch(rule.Ports, *dst, portName)
			} else {
				portOK = len(rule.Ports) == 0 || slices.ContainsFunc(rule.Ports,
					func(p networkingv1.NetworkPolicyPort) bool {
						return tcp(p) && (p.Port == nil || p.Port.IntValue() == int(outsidePort))
					})
			}
			return portOK && n.peersMatch(rule.To, np.Namespace, dst)
		})
	})
}

func tcp(np networkingv1.NetworkPolicyPort) bool {
	return np.Protocol == nil || *np.Protocol == corev1.ProtocolTCP
}

// portsMatch reports whether a rule's ports admit dst's named port; a
// rule without ports admits all.
func (n network) portsMatch(ports []networkingv1.NetworkPolicyPort, dst pod, portName string) bool {
	if len(ports) == 0 {
		return true
	}
	number := dst.ports[portName]
	return slices.ContainsFunc(ports, func(np networkingv1.NetworkPolicyPort) bool {
		switch {
		case !tcp(np):
			return false
		case np.Port == nil:
			return true
		case np.Port.StrVal != "":
			return np.Port.StrVal == portName
		case np.EndPort != nil:
			return np.Port.IntVal <= number && number <= *np.EndPort
		}
		return np.Port.IntVal == number
	})
}

// peersMatch reports whether one of peers, in a policy of namespace, is
// the pod p (nil: the outside address); no peers match everything.
func (n network) peersMatch(peers []networkingv1.NetworkPolicyPeer, namespace string, p *pod) bool {
	if len(peers) == 0 {
		return true
	}
	return slices.ContainsFunc(peers, func(peer networkingv1.NetworkPolicyPeer) bool {
		if peer.IPBlock != nil {
			// Pods' addresses are the cluster's; only the outside is in a block.
			if p != nil {
				return false
			}
			block, err := netip.ParsePrefix(peer.IPBlock.CIDR)
			if err != nil || !block.Contains(outside) {
				return false
			}
			return !slices.ContainsFunc(peer.IPBlock.Except, func(e string) bool {
				ex, err := netip.ParsePrefix(e)
				return err == nil && ex.Contains(outside)
			})
		}
		if p == nil {
			return false
		}
		if peer.NamespaceSelector == nil {
			if p.namespace != namespace {
				return false
			}
		} else if !selects(peer.NamespaceSelector, n.namespaces[p.namespace]) {
			return false
		}
		return peer.PodSelector == nil || selects(peer.PodSelector, p.labels)
	})
}

// wantFlows are the connections the platform needs and no others: gRPC
// from each method's callers (the gateway for public methods), as the
// method policies declare them; the transaction-token keys of the gateway
// for every workload that verifies them; the issuer's keys on the user
// service's admin port for the gateway; NATS for every workload that has
// a NATS user; the NATS routes; and the gateway's public port from
// outside.
func wantFlows(t *testing.T) []string {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString(devstack.DefaultConfig().TrustDomain)
	set, err := policy.Load(td, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"outside -> gateway:http": true, "nats -> nats:cluster": true,
		"gateway -> user:admin": true}
	for m := range set.Methods() {
		for _, caller := range m.Callers {
			want[fmt.Sprintf("%s -> %s:grpc", strings.TrimPrefix(caller.Path(), "/"), m.ServerName)] = true
		}
	}
	for _, w := range devstack.Workloads {
		want[w+" -> nats:client"] = true
		if w != policy.Gateway {
			want[w+" -> gateway:internal"] = true
		}
	}
	return slices.Sorted(maps.Keys(want))
}

func TestRenderedWorkloadsMeetThePolicy(t *testing.T) {
	t.Parallel()
	for _, dir := range kustomizations(t) {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			objects := renderOverlay(t, dir)
			workloads := workloadsOf(objects)
			var names []string
			for _, w := range workloads {
				names = append(names, w.name)
				for _, v := range podViolations(w) {
					t.Error(v)
				}
			}
			want := slices.Sorted(slices.Values(append([]string{"nats"}, devstack.Workloads...)))
			if diff := cmp.Diff(want, slices.Sorted(slices.Values(names))); diff != "" {
				t.Errorf("workloads (-want +got):\n%s", diff)
			}
			for _, v := range coverageViolations(objects) {
				t.Error(v)
			}

			n := newNetwork(objects)
			if diff := cmp.Diff(wantFlows(t), n.flows()); diff != "" {
				t.Errorf("connections the NetworkPolicies allow (-needed +allowed):\n%s", diff)
			}
			for _, p := range n.pods {
				if n.egressAllows(p, nil, "", 443) {
					t.Errorf("%s may reach addresses outside the cluster", p.name)
				}
			}
		})
	}
}

// TestPolicyChecksCatchViolations breaks a rendered workload in one way at
// a time, to show that the checks above would catch each.
func TestPolicyChecksCatchViolations(t *testing.T) {
	t.Parallel()
	objects := renderOverlay(t, "base")
	userIndex := slices.IndexFunc(objects, func(o object) bool {
		_, ok := o.Object.(*appsv1.Deployment)
		return ok && o.name == "user"
	})
	if userIndex < 0 {
		t.Fatal("no user Deployment in the base")
	}
	yes, no, root := true, false, int64(0)
	c := func(p *corev1.PodSpec) *corev1.Container { return &p.Containers[0] }
	sc := func(p *corev1.PodSpec) *corev1.SecurityContext { return c(p).SecurityContext }
	tests := []struct {
		name   string
		mutate func(p *corev1.PodSpec)
		want   string
	}{
		{"runAsNonRoot off", func(p *corev1.PodSpec) { p.SecurityContext.RunAsNonRoot = &no }, "may run as root"},
		{"runAsNonRoot unset", func(p *corev1.PodSpec) { p.SecurityContext.RunAsNonRoot = nil }, "may run as root"},
		{"user 0", func(p *corev1.PodSpec) { sc(p).RunAsUser = &root }, "runs as user 0"},
		{"writable root", func(p *corev1.PodSpec) { sc(p).ReadOnlyRootFilesystem = &no }, "may write its root"},
		{"escalation unset", func(p *corev1.PodSpec) { sc(p).AllowPrivilegeEscalation = nil }, "may escalate"},
		{"privileged", func(p *corev1.PodSpec) { sc(p).Privileged = &yes }, "is privileged"},
		{"capabilities kept", func(p *corev1.PodSpec) { sc(p).Capabilities = nil }, "default capabilities"},
		{"capability added", func(p *corev1.PodSpec) {
			sc(p).Capabilities.Add = []corev1.Capability{"NET_ADMIN"}
		}, "adds capabilities"},
		{"seccomp unconfined", func(p *corev1.PodSpec) {
			sc(p).SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		}, "seccomp"},
		{"no readiness probe", func(p *corev1.PodSpec) { c(p).ReadinessProbe = nil }, "probe"},
		{"no liveness probe", func(p *corev1.PodSpec) { c(p).LivenessProbe = nil }, "probe"},
		{"no memory limit", func(p *corev1.PodSpec) {
			delete(c(p).Resources.Limits, corev1.ResourceMemory)
		}, "no memory limit"},
		{"no cpu request", func(p *corev1.PodSpec) {
			delete(c(p).Resources.Requests, corev1.ResourceCPU)
		}, "no cpu request"},
		{"host network", func(p *corev1.PodSpec) { p.HostNetwork = true }, "host's network"},
		{"a root init container", func(p *corev1.PodSpec) {
			p.InitContainers = []corev1.Container{{Name: "setup",
				SecurityContext: &corev1.SecurityContext{RunAsUser: &root}}}
		}, "container setup runs as user 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := objects[userIndex].Object.(*appsv1.Deployment).DeepCopy()
			tt.mutate(&d.Spec.Template.Spec)
			violations := podViolations(workloadsOf([]object{{Object: d}})[0])
			if !slices.ContainsFunc(violations, func(v string) bool { return strings.Contains(v, tt.want) }) {
				t.Fatalf("violations %q, want one containing %q", violations, tt.want)
			}
		})
	}

	without := func(kind, name string) []object {
		return slices.DeleteFunc(slices.Clone(objects), func(o object) bool {
			return o.gvk.Kind == kind && o.name == name
		})
	}
	for _, tt := range []struct {
		kind, name, want string
	}{
		{"NetworkPolicy", "user",
			"Deployment user is not covered by a NetworkPolicy of its own for ingress and egress"},
		{"Service", "order", "Deployment order has no Service"},
		{"PodDisruptionBudget", "nats", "StatefulSet nats has no PodDisruptionBudget"},
	} {
		t.Run("without "+tt.kind+" "+tt.name, func(t *testing.T) {
			t.Parallel()
			got := coverageViolations(without(tt.kind, tt.name))
			if !slices.Contains(got, tt.want) {
				t.Fatalf("violations %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("a workload open to every pod", func(t *testing.T) {
		t.Parallel()
		broken := slices.Clone(objects)
		for i, o := range broken {
			if np, ok := o.Object.(*networkingv1.NetworkPolicy); ok && o.name == "payment" {
				np = np.DeepCopy()
				np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{})
				broken[i].Object = np
			}
		}
		flows := newNetwork(broken).flows()
		for _, f := range []string{"outside -> payment:admin", "outside -> payment:grpc"} {
			if !slices.Contains(flows, f) {
				t.Errorf("flows %q lack %q", flows, f)
			}
		}
		if slices.Contains(flows, "order -> user:admin") {
			t.Errorf("flows %q include order -> user:admin, which no policy opens", flows)
		}
	})
}
