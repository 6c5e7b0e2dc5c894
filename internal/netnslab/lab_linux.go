package netnslab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/redis-carp-proxy/redis-carp-proxy/internal/testutil"
)

// Unavailable returns why a lab cannot run here (not root, no ip(8), a missing command),
// or "" when it can.
func Unavailable(commands ...string) string {
	if os.Geteuid() != 0 {
		return "needs root (network namespaces)"
	}
	for _, c := range append([]string{"ip"}, commands...) {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Sprintf("needs %s in PATH (tools/install-deps.sh installs it)", c)
		}
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		return fmt.Sprintf("ip netns does not work here: %v: %s", err, bytes.TrimSpace(out))
	}
	return ""
}

// Lab is a set of network namespaces and the processes running in them.
type Lab struct {
	t      testing.TB
	prefix string

	mu        sync.Mutex
	nss       []string // full names, in creation order
	procs     []*Proc
	rootLinks []string

	// spawn runs functions on one OS thread that lives as long as the lab: processes are
	// started there, because Pdeathsig fires when the *thread* that forked them ends, and
	// a thread can end here (InNS keeps one it could not switch back).
	spawn chan func()
}

// New creates an empty lab whose namespaces are torn down (and checked) when t ends.
func New(t testing.TB) *Lab {
	var b [3]byte
	rand.Read(b[:])
	l := &Lab{t: t, prefix: "rcp" + hex.EncodeToString(b[:])}
	l.rootLinks = linkNames(t)
	l.spawn = make(chan func())
	go func() {
		runtime.LockOSThread()
		for f := range l.spawn {
			f()
		}
	}()
	t.Cleanup(l.teardown)
	return l
}

// NS returns the full (prefixed) name of the lab namespace called name.
func (l *Lab) NS(name string) string { return l.prefix + "-" + name }

// AddNS creates namespaces with loopback up.
func (l *Lab) AddNS(names ...string) {
	l.t.Helper()
	for _, n := range names {
		full := l.NS(n)
		l.mustIP("netns", "add", full)
		l.mu.Lock()
		l.nss = append(l.nss, full)
		l.mu.Unlock()
		l.mustIP("-n", full, "link", "set", "lo", "up")
	}
}

// IP runs ip(8) with args (use l.NS for namespace names).
func (l *Lab) IP(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (l *Lab) mustIP(args ...string) {
	l.t.Helper()
	if err := l.IP(args...); err != nil {
		l.t.Fatal(err)
	}
}

// Bridge creates bridge br0 in namespace sw and plugs each host into it: a veth pair
// whose host end is eth0 in the host namespace, with the given address (CIDR).
func (l *Lab) Bridge(sw string, hosts map[string]string) {
	l.t.Helper()
	s := l.NS(sw)
	l.mustIP("-n", s, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")
	l.mustIP("-n", s, "link", "set", "br0", "up")
	names := make([]string, 0, len(hosts))
	for h := range hosts {
		names = append(names, h)
	}
	slices.Sort(names)
	for _, h := range names {
		port := "p-" + h
		l.mustIP("-n", s, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", l.NS(h))
		l.mustIP("-n", s, "link", "set", port, "master", "br0", "up")
		l.mustIP("-n", l.NS(h), "addr", "add", hosts[h], "dev", "eth0")
		l.mustIP("-n", l.NS(h), "link", "set", "eth0", "up")
	}
}

// Exec runs argv in namespace ns and returns its combined output.
func (l *Lab) Exec(ctx context.Context, ns string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.NS(ns)}, argv...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), ns, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Proc is a background process in a lab namespace.
type Proc struct {
	Name string
	NS   string // full namespace name
	cmd  *exec.Cmd
	out  *testutil.SyncBuffer
	done chan struct{}
	err  error
}

// Start starts argv in namespace ns in the background; its output is kept for Output.
func (l *Lab) Start(ns, name string, argv ...string) *Proc {
	l.t.Helper()
	p := &Proc{Name: name, NS: l.NS(ns), out: &testutil.SyncBuffer{Limit: 4 << 20}, done: make(chan struct{})}
	// ip netns exec execs argv in place: the PID is the process itself.
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", p.NS}, argv...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// Own process group; never outlive the test binary.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	errc := make(chan error)
	l.spawn <- func() { errc <- p.cmd.Start() }
	if err := <-errc; err != nil {
		l.t.Fatalf("start %s: %v", name, err)
	}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	go func() {
		p.err = p.cmd.Wait() // reaps: no zombie is left
		close(p.done)
	}()
	return p
}

// Output returns what the process wrote so far.
func (p *Proc) Output() string { return p.out.String() }

// Exited reports whether the process has ended (and was reaped).
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process if it still runs in its namespace.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	if !pidInNS(p.cmd.Process.Pid, p.NS) {
		return fmt.Errorf("%s: pid %d is not in namespace %s", p.Name, p.cmd.Process.Pid, p.NS)
	}
	return p.cmd.Process.Signal(sig)
}

// Stop sends SIGTERM and waits up to grace, then SIGKILLs; it returns when reaped and
// reports whether SIGKILL was needed.
func (p *Proc) Stop(grace time.Duration) (killed bool) {
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return false
	case <-time.After(grace):
	}
	p.Signal(syscall.SIGKILL)
	<-p.done
	return true
}

// Wait waits until the process has ended, at most d.
func (p *Proc) Wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// nsInode returns the inode of a namespace file (/run/netns/NAME or /proc/PID/ns/net).
func nsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

func pidInNS(pid int, ns string) bool {
	a, err1 := nsInode(fmt.Sprintf("/proc/%d/ns/net", pid))
	b, err2 := nsInode("/run/netns/" + ns)
	return err1 == nil && err2 == nil && a == b
}

// InNS runs f on an OS thread switched into namespace ns (the lab's short name), then
// switches the thread back. Sockets created by f stay in ns. If the thread cannot be
// switched back it stays locked, so Go ends it rather than reuse it in the wrong namespace.
func (l *Lab) InNS(ns string, f func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		fd, err := unix.Open("/run/netns/"+l.NS(ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open namespace %s: %w", ns, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		f()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leave namespace %s: %w", ns, err) // thread stays locked
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	return <-errc
}

// Dial connects from namespace ns.
func (l *Lab) Dial(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	var derr error
	if err := l.InNS(ns, func() {
		var d net.Dialer
		c, derr = d.DialContext(ctx, network, addr)
	}); err != nil {
		return nil, err
	}
	return c, derr
}

// HasAddr reports whether addr is assigned to an interface in namespace ns.
func (l *Lab) HasAddr(ns string, addr netip.Addr) (bool, error) {
	var found bool
	var aerr error
	if err := l.InNS(ns, func() {
		var addrs []net.Addr
		addrs, aerr = net.InterfaceAddrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr {
					found = true
				}
			}
		}
	}); err != nil {
		return false, err
	}
	return found, aerr
}

func linkNames(t testing.TB) []string {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatalf("list links: %v", err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	slices.Sort(names)
	return names
}

// ownRootLinks lists root-namespace links that did not exist before the lab and carry a
// name the lab uses (everything it creates lives in its namespaces; this proves it).
func (l *Lab) ownRootLinks() []string {
	var left []string
	for _, n := range linkNames(l.t) {
		if slices.Contains(l.rootLinks, n) {
			continue
		}
		if n == "br0" || n == "eth0" || strings.HasPrefix(n, "p-") || strings.Contains(n, l.prefix) {
			left = append(left, n)
		}
	}
	return left
}

// nsPIDs lists the PIDs whose network namespace is ns.
func nsPIDs(ns string) []int {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procAlive reports whether pid exists and is not a zombie.
func procAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// teardown stops every process, kills what is still in the namespaces, deletes them and
// fails the test if a namespace, a root-namespace link or a process is left.
func (l *Lab) teardown() {
	start := time.Now()
	l.mu.Lock()
	procs, nss := slices.Clone(l.procs), slices.Clone(l.nss)
	l.mu.Unlock()
	var wg sync.WaitGroup
	for i := len(procs) - 1; i >= 0; i-- {
		wg.Add(1)
		go func(p *Proc) {
			defer wg.Done()
			if p.Stop(2 * time.Second) {
				l.t.Logf("teardown: %s needed SIGKILL", p.Name)
			}
		}(procs[i])
	}
	wg.Wait()
	close(l.spawn)
	// Whatever else runs in the namespaces (scripts started by ucarp …).
	deadline := time.Now().Add(3 * time.Second)
	for _, ns := range nss {
		for {
			var alive []int
			for _, pid := range nsPIDs(ns) {
				if pid != os.Getpid() && procAlive(pid) {
					alive = append(alive, pid)
				}
			}
			if len(alive) == 0 {
				break
			}
			if time.Now().After(deadline) {
				l.t.Errorf("teardown: processes %v still in %s", alive, ns)
				break
			}
			for _, pid := range alive {
				if pidInNS(pid, ns) {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i := len(nss) - 1; i >= 0; i-- {
		if err := l.IP("netns", "del", nss[i]); err != nil {
			l.t.Errorf("teardown: %v", err)
		}
	}
	// Nothing may be left: namespaces, links in the root namespace, processes.
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), l.prefix) {
		l.t.Errorf("teardown: namespaces left:\n%s", out)
	}
	// Deleting a namespace destroys its veths asynchronously: allow a moment.
	for i := 0; ; i++ {
		left := l.ownRootLinks()
		if len(left) == 0 {
			break
		}
		if i == 20 {
			l.t.Errorf("teardown: links left in the root namespace: %v", left)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range procs {
		if !p.Exited() || procAlive(p.cmd.Process.Pid) && pidInNS(p.cmd.Process.Pid, p.NS) {
			l.t.Errorf("teardown: %s (pid %d) still running", p.Name, p.cmd.Process.Pid)
		}
	}
	l.t.Logf("teardown of %d namespaces and %d processes took %v", len(nss), len(procs), time.Since(start).Round(time.Millisecond))
}
