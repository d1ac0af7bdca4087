// Package k8s holds the Kubernetes manifests (kustomize) and their test.
package k8s

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/agentproxy/agentproxy/config"
)

// TestManifests renders the kustomization as kubectl kustomize would and
// reads it into the Kubernetes API types: the sidecar's ports, probe
// paths and config mount match the proxy's defaults and its flags, and
// the ConfigMap is config.example.toml.
func TestManifests(t *testing.T) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), ".")
	if err != nil {
		t.Fatalf("kustomize: %v", err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	var dep *appsv1.Deployment
	var cm *corev1.ConfigMap
	var secret *corev1.Secret
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		var target any
		switch meta.Kind {
		case "Deployment":
			dep = &appsv1.Deployment{}
			target = dep
		case "ConfigMap":
			cm = &corev1.ConfigMap{}
			target = cm
		case "Secret":
			secret = &corev1.Secret{}
			target = secret
		default:
			t.Fatalf("unexpected kind %q", meta.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, target); err != nil {
			t.Fatalf("%s: %v", meta.Kind, err)
		}
	}
	if dep == nil || cm == nil || secret == nil {
		t.Fatalf("rendered: deployment %v configmap %v secret %v", dep != nil, cm != nil, secret != nil)
	}
	example, _ := os.ReadFile("../config.example.toml")
	if cm.Data["agentproxy.toml"] != string(example) {
		t.Error("k8s/agentproxy.toml differs from config.example.toml: copy it again")
	}
	spec := dep.Spec.Template.Spec
	if len(spec.InitContainers) != 1 || spec.InitContainers[0].RestartPolicy == nil || *spec.InitContainers[0].RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Fatal("agentproxy is not a native sidecar (an init container with restartPolicy Always)")
	}
	px := spec.InitContainers[0]
	def := config.Default()
	ports := map[string]int32{}
	for _, p := range px.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["redis"] != 6380 || ports["metrics"] != 9121 || !strings.HasSuffix(def.Listen.Addr, ":6380") || !strings.HasSuffix(def.Listen.MetricsAddr, ":9121") {
		t.Errorf("ports %v, defaults %s %s", ports, def.Listen.Addr, def.Listen.MetricsAddr)
	}
	args := strings.Join(px.Args, " ")
	for _, want := range []string{"--listen 127.0.0.1:6380", "--metrics 0.0.0.0:9121", "--config /etc/agentproxy/agentproxy.toml"} {
		if !strings.Contains(args, want) {
			t.Errorf("sidecar args %q lack %q", args, want)
		}
	}
	if px.ReadinessProbe == nil || px.ReadinessProbe.HTTPGet.Path != "/readyz" || px.LivenessProbe == nil || px.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("probes are not /readyz and /healthz")
	}
	if px.ReadinessProbe.HTTPGet.Port.String() != "metrics" {
		t.Errorf("readiness probe port %s", px.ReadinessProbe.HTTPGet.Port.String())
	}
	mounts := map[string]bool{}
	for _, m := range px.VolumeMounts {
		mounts[m.MountPath] = true
	}
	if !mounts["/etc/agentproxy/agentproxy.toml"] || !mounts["/etc/agentproxy/secret"] {
		t.Errorf("mounts %v: want the config at /etc/agentproxy/agentproxy.toml and the secret at /etc/agentproxy/secret", mounts)
	}
	// The users file the Secret holds loads as the proxy would load it.
	env := map[string]string{}
	for _, e := range px.Env {
		env[e.Name] = e.Value
	}
	if env["AGENTPROXY_AUTH_USERS_FILE"] != "/etc/agentproxy/secret/users.toml" {
		t.Errorf("AGENTPROXY_AUTH_USERS_FILE = %q", env["AGENTPROXY_AUTH_USERS_FILE"])
	}
	users := t.TempDir() + "/users.toml"
	os.WriteFile(users, []byte(secret.StringData["users.toml"]), 0o600)
	c := config.Default()
	c.Auth.UsersFile = users
	if err := config.LoadUsersFile(&c); err != nil || len(c.Users) != 1 || c.Validate() != nil {
		t.Errorf("the secret's users.toml: %v, %d users, %v", err, len(c.Users), c.Validate())
	}
	if a := dep.Spec.Template.Annotations; a["prometheus.io/port"] != "9121" || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations: %v", a)
	}
	if _, ok := secret.StringData["upstream-url"]; !ok {
		t.Error("the secret example has no upstream-url")
	}
}

// TestStaticBinary: the build the Dockerfile runs gives a static binary
// (no ELF interpreter), which the distroless static image needs.
func TestStaticBinary(t *testing.T) {
	bin := t.TempDir() + "/agentproxy"
	// The Dockerfile's flags, with the version it passes.
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w -X main.version=v9.9.9-test", "-o", bin, "../cmd/agentproxy")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary needs a dynamic loader: not static")
		}
	}
	if out, err := exec.Command(bin, "--version").CombinedOutput(); err != nil || !bytes.Contains(out, []byte("v9.9.9-test")) {
		t.Errorf("--version of the Docker build: %v %q", err, out)
	}
	df, _ := os.ReadFile("../Dockerfile")
	if !bytes.Contains(df, []byte("CGO_ENABLED=0 go build")) || !bytes.Contains(df, []byte("static")) ||
		!bytes.Contains(df, []byte("-X main.version=${VERSION}")) {
		t.Error("the Dockerfile does not build and ship the static binary")
	}
}
