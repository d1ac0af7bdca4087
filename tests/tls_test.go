package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/agentproxy/agentproxy/app"
	"github.com/agentproxy/agentproxy/internal/testutil"
)

// tlsFiles writes a CA and a certificate it signs for 127.0.0.1 and
// localhost (PEM) into dir and returns their paths.
func tlsFiles(t *testing.T, dir, name string) (ca, cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	write := func(file, typ string, b []byte) string {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write(name+"-ca.pem", "CERTIFICATE", caDER), write(name+".pem", "CERTIFICATE", der), write(name+".key", "EC PRIVATE KEY", kb)
}

// TestTLSUpstream: rediss:// to a redis-server that speaks only TLS and
// requires a client certificate, with the CA and the client certificate
// from [upstream]; a proxy that does not trust the server's CA refuses to
// talk to it.
func TestTLSUpstream(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := tlsFiles(t, dir, "redis")
	port := testutil.FreePort(t)
	r := testutil.StartRedisTLS(t, port, "--port", "0", "--tls-port", strconv.Itoa(port),
		"--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "yes")
	cfg := faultConfig(t, "rediss://"+r.Addr)
	cfg.Upstream.TLSCAFile, cfg.Upstream.TLSCertFile, cfg.Upstream.TLSKeyFile = ca, cert, key
	a := testutil.StartProxy(t, cfg)
	c := testutil.Dial(t, a.Addr())
	if got := c.DoS("SET", "deepagents:{default}:kv:tls", "v"); got != "+OK\r\n" {
		t.Fatalf("SET over TLS: %q", got)
	}
	if got := c.DoS("GET", "deepagents:{default}:kv:tls"); got != "$1\r\nv\r\n" {
		t.Fatalf("GET over TLS: %q", got)
	}
	if got := c.DoS("TODO.ADD", "over tls"); got[0] == '-' {
		t.Fatalf("TODO.ADD over TLS: %q", got)
	}

	// Another CA: the server's certificate is not trusted.
	otherCA, _, _ := tlsFiles(t, dir, "other")
	bad := faultConfig(t, "rediss://"+r.Addr)
	bad.Upstream.TLSCAFile, bad.Upstream.TLSCertFile, bad.Upstream.TLSKeyFile = otherCA, cert, key
	b, err := app.Start(bad, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	if b.WaitUp(time.Second) {
		t.Fatal("connected to a server whose certificate an untrusted CA signed")
	}
	bc := testutil.Dial(t, b.Addr())
	if got := bc.DoS("GET", "deepagents:{default}:kv:tls"); !strings.HasPrefix(got, "-TRYAGAIN ") {
		t.Errorf("GET with the server untrusted: %q, want TRYAGAIN", got)
	}

	// Settings that cannot work are refused at start.
	wrong := faultConfig(t, "redis://"+r.Addr)
	wrong.Upstream.TLSCAFile = ca
	if err := wrong.Validate(); err == nil || !strings.Contains(err.Error(), "upstream.tls_") {
		t.Errorf("tls_ca_file with redis://: %v", err)
	}
}
