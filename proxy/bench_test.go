package proxy_test

import (
	"bufio"
	"fmt"
	"net"
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
