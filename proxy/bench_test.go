package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"
)

// BenchmarkProxyGET sends GET (or SET) through a proxy on a real cluster from one
// connection, pipelined by -P: b.N requests, allocations per request reported (the proxy
// runs in this process, so its allocations are counted). The cluster and proxy start once.
func BenchmarkProxyGET(b *testing.B) {
	c := sharedCluster(b)
	p := startProxy(b, c, nil)
	for _, bc := range []struct {
		name  string
		cmd   string
		depth int
	}{{"GET/P1", "GET", 1}, {"GET/P16", "GET", 16}, {"SET/P16", "SET", 16}} {
		b.Run(bc.name, func(b *testing.B) {
			conn, err := net.Dial("tcp", p.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReaderSize(conn, 64<<10)
			batch := make([]byte, 0, 4096)
			for i := 0; i < bc.depth; i++ {
				key := fmt.Sprintf("bench:%d", i)
				if bc.cmd == "GET" {
					batch = fmt.Appendf(batch, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(key), key)
				} else {
					batch = fmt.Appendf(batch, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$8\r\nbenchval\r\n", len(key), key)
				}
			}
			conn.SetDeadline(time.Now().Add(time.Minute))
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += bc.depth {
				if _, err := conn.Write(batch); err != nil {
					b.Fatal(err)
				}
				for i := 0; i < bc.depth; i++ {
					line, err := br.ReadSlice('\n')
					if err != nil {
						b.Fatal(err)
					}
					if line[0] == '$' && line[1] != '-' { // bulk: skip the value line
						if _, err := br.ReadSlice('\n'); err != nil {
							b.Fatal(err)
						}
					} else if line[0] == '-' {
						b.Fatalf("error reply: %s", line)
					}
				}
			}
		})
	}
}

// BenchmarkProxyLargeValue forwards SET and GET of 4 KiB and 64 KiB values through a proxy
// on a real cluster from one connection, pipelined 1 and 16 deep: the path of long
// replies and commands by reference (chunk.go, outchain.go). Allocations per request are
// the proxy's (it runs in this process); b.SetBytes makes the MB/s the values' rate.
func BenchmarkProxyLargeValue(b *testing.B) {
	c := sharedCluster(b)
	p := startProxy(b, c, nil)
	for _, size := range []int{4 << 10, 64 << 10} {
		val := bytes.Repeat([]byte{'v'}, size)
		for _, cmd := range []string{"SET", "GET"} {
			for _, depth := range []int{1, 16} {
				b.Run(fmt.Sprintf("%s/%dKiB/P%d", cmd, size>>10, depth), func(b *testing.B) {
					conn, err := net.Dial("tcp", p.addr)
					if err != nil {
						b.Fatal(err)
					}
					defer conn.Close()
					br := bufio.NewReaderSize(conn, 64<<10)
					var batch []byte
					for i := 0; i < depth; i++ {
						key := fmt.Sprintf("bench:large:%d:%d", size, i)
						if cmd == "GET" {
							batch = fmt.Appendf(batch, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(key), key)
						} else {
							batch = fmt.Appendf(batch, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", len(key), key, size)
							batch = append(append(batch, val...), "\r\n"...)
						}
					}
					if cmd == "GET" { // the values to read
						conn.SetDeadline(time.Now().Add(time.Minute))
						for i := 0; i < depth; i++ {
							key := fmt.Sprintf("bench:large:%d:%d", size, i)
							fmt.Fprintf(conn, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(key), key, size, val)
							if line, err := br.ReadSlice('\n'); err != nil || line[0] != '+' {
								b.Fatalf("SET: %q %v", line, err)
							}
						}
					}
					conn.SetDeadline(time.Now().Add(time.Minute))
					b.SetBytes(int64(size))
					b.ReportAllocs()
					b.ResetTimer()
					for done := 0; done < b.N; done += depth {
						if _, err := conn.Write(batch); err != nil {
							b.Fatal(err)
						}
						for i := 0; i < depth; i++ {
							if err := skipReply(br, size); err != nil {
								b.Fatal(err)
							}
						}
					}
				})
			}
		}
	}
}

// skipReply reads one reply: +OK, or a bulk string of size bytes.
func skipReply(br *bufio.Reader, size int) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	switch line[0] {
	case '+':
		return nil
	case '$':
		if n, _ := strconv.Atoi(string(line[1 : len(line)-2])); n != size {
			return fmt.Errorf("bulk of %d bytes, want %d", n, size)
		}
		_, err := br.Discard(size + 2)
		return err
	}
	return fmt.Errorf("reply %q", line)
}
