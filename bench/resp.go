package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A minimal RESP client: enough to check readiness, check that a target
// really executes GET/SET on workspace keys (redis-benchmark happily measures
// the throughput of error replies), and preload the keyspace.

type respConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func dialRESP(addr string, timeout time.Duration) (*respConn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	return &respConn{c: c, r: bufio.NewReader(c), w: bufio.NewWriterSize(c, 64<<10)}, nil
}

func (rc *respConn) Close() error { return rc.c.Close() }

func (rc *respConn) send(args ...string) {
	fmt.Fprintf(rc.w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(rc.w, "$%d\r\n%s\r\n", len(a), a)
	}
}

// reply reads one reply and returns it in a readable form: "+OK", "-ERR ...",
// ":1", the bulk string's contents, "(nil)", or "[n elements]".
func (rc *respConn) reply() (string, error) {
	line, err := rc.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply line")
	}
	switch line[0] {
	case '+', '-', ':':
		return line, nil
	case '_':
		return "(nil)", nil
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("bad bulk length %q", line)
		}
		if n < 0 {
			return "(nil)", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rc.r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", fmt.Errorf("bad array length %q", line)
		}
		for i := 0; i < n; i++ {
			if _, err := rc.reply(); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("[%d elements]", n), nil
	default:
		return "", fmt.Errorf("unexpected reply %q", line)
	}
}

func (rc *respConn) do(args ...string) (string, error) {
	rc.send(args...)
	if err := rc.w.Flush(); err != nil {
		return "", err
	}
	return rc.reply()
}

// ping sends PING as a RESP array (twemproxy does not speak inline commands).
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(buf[:n], []byte("+PONG")) {
		return fmt.Errorf("PING answered %q", buf[:n])
	}
	return nil
}

// probe checks that SET and GET of a key of the benchmark's shape work
// through addr, so a proxy that refuses them fails loudly instead of being
// benchmarked on error replies.
func probe(addr, key, value string) error {
	rc, err := dialRESP(addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer rc.Close()
	got, err := rc.do("SET", key, value)
	if err != nil {
		return fmt.Errorf("SET %s: %w", key, err)
	}
	if got != "+OK" {
		return fmt.Errorf("SET %s answered %q, want +OK", key, got)
	}
	got, err = rc.do("GET", key)
	if err != nil {
		return fmt.Errorf("GET %s: %w", key, err)
	}
	if got != value {
		return fmt.Errorf("GET %s answered %q, want %q", key, got, value)
	}
	return nil
}

// enforcementProbe sends a SET of a key outside the key grammar and
// describes the answer: SPEC §14 targets are measured with enforcement on.
func enforcementProbe(addr string) string {
	rc, err := dialRESP(addr, 5*time.Second)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	defer rc.Close()
	got, err := rc.do("SET", "agentproxy-bench-outside-grammar", "x")
	switch {
	case err != nil:
		return "unknown (" + err.Error() + ")"
	case strings.HasPrefix(got, "-"):
		code, _, _ := strings.Cut(got[1:], " ")
		return "on (a key outside the grammar got -" + code + ")"
	default:
		return "OFF (a key outside the grammar was accepted)"
	}
}

// preload writes every key redis-benchmark's __rand_int__ can produce
// (12-digit, zero-padded 0..n-1), so GET runs hit existing keys.
func preload(addr, keyFmt, value string, n int) error {
	rc, err := dialRESP(addr, 60*time.Second)
	if err != nil {
		return err
	}
	defer rc.Close()
	const batch = 1000
	for start := 0; start < n; start += batch {
		end := min(start+batch, n)
		for i := start; i < end; i++ {
			rc.send("SET", fmt.Sprintf(keyFmt, fmt.Sprintf("%012d", i)), value)
		}
		if err := rc.w.Flush(); err != nil {
			return err
		}
		for i := start; i < end; i++ {
			got, err := rc.reply()
			if err != nil {
				return err
			}
			if got != "+OK" {
				return fmt.Errorf("preload SET answered %q", got)
			}
		}
	}
	return nil
}

// latencyProbe measures single-client, unpipelined round trips with
// nanosecond timestamps. redis-benchmark's histogram has 8 µs buckets at
// this range (its lowest discernible value is 10 µs), too coarse for a
// 30 µs target; this probe's own overhead is the same for every target, so
// differences between targets are precise.
func latencyProbe(ctx context.Context, addr, cmd, keyFmt, value string, keyspace, n int) (p50us, p99us, rps float64, err error) {
	rc, err := dialRESP(addr, 5*time.Second)
	if err != nil {
		return 0, 0, 0, err
	}
	defer rc.Close()
	_ = rc.c.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { _ = rc.c.SetDeadline(time.Now()) })
	defer stop()

	var req []byte
	build := func(i int) []byte {
		key := fmt.Sprintf(keyFmt, fmt.Sprintf("%012d", i))
		req = req[:0]
		if cmd == "SET" {
			req = fmt.Appendf(req, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(key), key, len(value), value)
		} else {
			req = fmt.Appendf(req, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(key), key)
		}
		return req
	}
	roundTrip := func(i int) error {
		if _, err := rc.c.Write(build(i)); err != nil {
			return err
		}
		got, err := rc.reply()
		if err != nil {
			return err
		}
		if strings.HasPrefix(got, "-") {
			return fmt.Errorf("%s answered %s", cmd, got)
		}
		return nil
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < min(n/10, 500); i++ { // warm the connection and both ends
		if err := roundTrip(rng.IntN(keyspace)); err != nil {
			return 0, 0, 0, err
		}
	}
	lat := make([]time.Duration, n)
	start := time.Now()
	for i := range lat {
		t0 := time.Now()
		if err := roundTrip(rng.IntN(keyspace)); err != nil {
			if ctx.Err() != nil {
				return 0, 0, 0, ctx.Err()
			}
			return 0, 0, 0, err
		}
		lat[i] = time.Since(t0)
	}
	elapsed := time.Since(start)
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(int(p*float64(n)), n-1)]) / float64(time.Microsecond)
	}
	return pct(0.50), pct(0.99), float64(n) / elapsed.Seconds(), nil
}
