package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process the harness started. Only processes recorded here
// are ever signalled, and only by their own pid.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when Wait returns
	waitErr error
}

// startProc starts argv with stdout and stderr going to dir/<name>.log.
// The child gets its own process group (a terminal Ctrl-C reaches only the
// harness, which then stops the children in order) and, on Linux, is killed
// by the kernel if the harness dies without cleaning up.
func startProc(name, dir string, argv []string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child holds its own descriptor
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to exit (SIGTERM), and kills it after a grace period.
func (p *proc) stop() {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(3 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
		fmt.Fprintf(os.Stderr, "bench: %s (pid %d) did not exit after SIGKILL\n", p.name, p.pid())
	}
}

// logTail returns the last n lines of the process log, for error messages.
func (p *proc) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// describeExit explains why a process is gone, with its log tail.
func (p *proc) describeExit() string {
	return fmt.Sprintf("%s (pid %d) exited: %v; log %s:\n%s", p.name, p.pid(), p.waitErr, p.logPath, p.logTail(15))
}

// freePort asks the kernel for a free loopback port. There is a small window
// in which another process could take it; on a benchmark box that is fine.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls addr with PING until it answers +PONG, the process exits,
// or the timeout passes.
func waitReady(ctx context.Context, p *proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p != nil && p.exited() {
			return errors.New(p.describeExit())
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if last = ping(addr); last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	msg := fmt.Sprintf("%s did not answer PING within %v: %v", addr, timeout, last)
	if p != nil {
		msg += fmt.Sprintf("; log %s:\n%s", p.logPath, p.logTail(15))
	}
	return errors.New(msg)
}

// clockTicks returns CLK_TCK, the unit of utime/stime in /proc/<pid>/stat.
func clockTicks() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && v > 0 {
			return v
		}
	}
	return 100
}

// cpuTicks returns utime+stime of a process (all its threads, live and
// exited) in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU extracts utime+stime from the text of /proc/<pid>/stat. The
// command name (field 2) may contain spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatCPU(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat: no ')'")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat: too few fields")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc stat: utime %q stime %q", f[11], f[12])
	}
	return ut + st, nil
}

// machineBusyTicks returns the ticks all CPUs spent busy since boot (the
// "cpu" line of /proc/stat, without idle and iowait).
func machineBusyTicks() (busy, total int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, errors.New("malformed /proc/stat")
	}
	for i, s := range f[1:] {
		if i >= 8 { // guest time is already counted in user
			break
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, 0, err
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}

// otherLoad samples /proc/stat over d and returns how many CPUs' worth of
// time was spent busy. Called while the harness's own servers are idle, it
// tells whether something else on the machine will skew the numbers.
func otherLoad(d time.Duration) (float64, error) {
	b1, t1, err := machineBusyTicks()
	if err != nil {
		return 0, err
	}
	time.Sleep(d)
	b2, t2, err := machineBusyTicks()
	if err != nil {
		return 0, err
	}
	if t2 == t1 {
		return 0, nil
	}
	return float64(b2-b1) / float64(t2-t1) * float64(runtime.NumCPU()), nil
}
