// loadgen: a dumb, fast HTTP load generator for `make bench-gateway` (std lib only).
//
// It replays prepared requests (a JSON Lines file: {"method","path","headers","body"} per
// request; the Python bench signs them) or sends one GET path N times, over -c keep-alive
// connections with one request in flight each, and prints one JSON object: count, seconds,
// rps, p50/p99/max latency (ms) and the status counts. Compiled, so the generator is not what
// limits a run: its ceiling is what it reaches on GET /healthz.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type request struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

type result struct {
	Count    int            `json:"count"`
	Errors   int            `json:"errors"`
	Seconds  float64        `json:"seconds"`
	RPS      float64        `json:"rps"`
	P50      float64        `json:"p50_ms"`
	P99      float64        `json:"p99_ms"`
	Max      float64        `json:"max_ms"`
	Statuses map[string]int `json:"statuses"`
	FirstErr string         `json:"first_error,omitempty"`
}

func load(path string) ([]request, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []request
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r request
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s line %d: %v", path, len(out)+1, err)
		}
		if r.Method == "" {
			r.Method = "GET"
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

func pct(s []time.Duration, q float64) float64 {
	if len(s) == 0 {
		return 0
	}
	i := int(q * float64(len(s)))
	if i >= len(s) {
		i = len(s) - 1
	}
	return float64(s[i].Microseconds()) / 1000
}

func main() {
	base := flag.String("url", "http://127.0.0.1:8000", "server base URL")
	file := flag.String("file", "", "JSON Lines of requests to replay, each once in file order (else -get)")
	get := flag.String("get", "/healthz", "path to GET -n times when no -file is given")
	n := flag.Int("n", 10000, "requests to send (default with -file: each of the file's once; more repeats them)")
	conns := flag.Int("c", 32, "connections, one request in flight on each")
	duration := flag.Duration("duration", 0, "stop after this long instead (e.g. 10s); the count is then what was sent")
	timeout := flag.Duration("timeout", 60*time.Second, "per-request timeout")
	flag.Parse()

	var reqs []request
	if *file != "" {
		var err error
		if reqs, err = load(*file); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
		if len(reqs) == 0 {
			fmt.Fprintln(os.Stderr, "loadgen: no request in", *file)
			os.Exit(2)
		}
	} else {
		reqs = []request{{Method: "GET", Path: *get}}
	}
	total := *n
	nSet := false
	flag.Visit(func(f *flag.Flag) { nSet = nSet || f.Name == "n" })
	if *file != "" && !nSet {
		total = len(reqs) // each request of the file once
	}
	if *duration > 0 {
		total = int(^uint(0) >> 1)
	}
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        *conns,
		MaxIdleConnsPerHost: *conns,
		MaxConnsPerHost:     *conns,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: transport, Timeout: *timeout}

	var next int64 = -1
	var mu sync.Mutex
	res := result{Statuses: map[string]int{}}
	var lats []time.Duration
	deadline := time.Time{}
	started := time.Now()
	if *duration > 0 {
		deadline = started.Add(*duration)
	}
	var wg sync.WaitGroup
	for w := 0; w < *conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, 1024)
			statuses := map[string]int{}
			errs, firstErr := 0, ""
			for {
				i := atomic.AddInt64(&next, 1)
				if int(i) >= total || (!deadline.IsZero() && time.Now().After(deadline)) {
					break
				}
				r := reqs[int(i)%len(reqs)]
				req, err := http.NewRequest(r.Method, *base+r.Path, bytes.NewReader([]byte(r.Body)))
				if err != nil {
					errs++
					firstErr = err.Error()
					continue
				}
				for k, v := range r.Headers {
					req.Header.Set(k, v)
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs++
					if firstErr == "" {
						firstErr = err.Error()
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mine = append(mine, time.Since(t0))
				statuses[strconv.Itoa(resp.StatusCode)]++
			}
			mu.Lock()
			lats = append(lats, mine...)
			for k, v := range statuses {
				res.Statuses[k] += v
			}
			res.Errors += errs
			if res.FirstErr == "" {
				res.FirstErr = firstErr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	secs := time.Since(started).Seconds()
	sort.Slice(lats, func(a, b int) bool { return lats[a] < lats[b] })
	res.Count = len(lats)
	res.Seconds = secs
	res.RPS = float64(len(lats)) / secs
	res.P50, res.P99 = pct(lats, 0.50), pct(lats, 0.99)
	if len(lats) > 0 {
		res.Max = float64(lats[len(lats)-1].Microseconds()) / 1000
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}
