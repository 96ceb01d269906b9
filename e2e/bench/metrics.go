package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
)

// memSampler records the process's peak heap in use every 100 ms.
type memSampler struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func startMemSampler() *memSampler {
	m := &memSampler{stop: make(chan struct{}), done: make(chan struct{})}
	// runtime/metrics rather than ReadMemStats: it does not stop the world.
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	read := func() {
		metrics.Read(samples)
		var v uint64
		for _, s := range samples {
			if s.Value.Kind() == metrics.KindUint64 {
				v += s.Value.Uint64()
			}
		}
		if v > m.peak.Load() {
			m.peak.Store(v)
		}
	}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			read()
			select {
			case <-m.stop:
				read()
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

func (m *memSampler) finish() uint64 {
	close(m.stop)
	<-m.done
	return m.peak.Load()
}

// vmHWM is the process's peak resident set, 0 where /proc does not tell it.
func vmHWM() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// redisCalls is the total of calls in INFO commandstats, leaving out INFO itself, which only the
// bench sends.
func redisCalls(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, err
	}
	var total int64
	for line := range strings.Lines(info) {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") || name == "cmdstat_info" {
			continue
		}
		for f := range strings.SplitSeq(stats, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				total += n
			}
		}
	}
	return total, nil
}

// redisCPU is the CPU time, in seconds, the Redis server has used (INFO cpu, user and system).
func redisCPU(ctx context.Context, rdb redis.UniversalClient) (float64, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var total float64
	for line := range strings.Lines(info) {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (name == "used_cpu_sys" || name == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("INFO cpu: %s: %v", name, err)
			}
			total += f
		}
	}
	return total, nil
}

// roundTrips is the bridge's count of round trips to Redis: its store's when in process, its
// /metrics' when elsewhere; a note says why it is not measured.
func roundTrips(ctx context.Context, t *target, admin *adminScraper) (int64, string) {
	switch {
	case t.exchanges != nil:
		return t.exchanges.Exchanges().RoundTrips, ""
	case t.inProcess:
		return 0, "not measured: in-memory store"
	case admin == nil:
		return 0, "not measured: give --admin-url"
	}
	m, err := admin.scrape(ctx)
	if err != nil {
		return 0, "not measured: " + err.Error()
	}
	v, ok := m.value("ssobridge_redis_round_trips_total")
	if !ok {
		return 0, "not measured: the bridge's /metrics has no ssobridge_redis_round_trips_total (is it on Redis?)"
	}
	return int64(v), ""
}

// adminScraper reads a bridge's /metrics.
type adminScraper struct {
	url, token string
}

// scrape reads the bridge's metrics.
func (a *adminScraper) scrape(ctx context.Context) (exposition, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url, nil)
	if err != nil {
		return nil, fmt.Errorf("--admin-url: %v", err)
	}
	// The text format, which every Prometheus client serves; without it a client may answer
	// in another that the text parser does not read.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("--admin-url: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("--admin-url: %s answered %s", a.url, resp.Status)
	}
	e, err := parseExposition(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("--admin-url: %s is not Prometheus metrics: %v", a.url, err)
	}
	return e, nil
}

// exposition is the metric families of a Prometheus text exposition, by name.
type exposition map[string]*dto.MetricFamily

// parseExposition reads a Prometheus text exposition with Prometheus's own parser. Names are
// validated as UTF-8, as Prometheus 3 does: it reads the bridge's names and any other.
func parseExposition(r io.Reader) (exposition, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// value is the value of a counter, gauge or untyped metric. The series of one with labels are
// added up: a figure per operation wants the whole count, whatever the labels split it by. It is
// false for a metric that is not there, and for a summary or a histogram, which have no one value.
func (e exposition) value(name string) (float64, bool) {
	mf, ok := e[name]
	if !ok || len(mf.GetMetric()) == 0 {
		return 0, false
	}
	var sum float64
	for _, m := range mf.GetMetric() {
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			sum += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			sum += m.GetGauge().GetValue()
		case dto.MetricType_UNTYPED:
			sum += m.GetUntyped().GetValue()
		default:
			return 0, false
		}
	}
	return sum, true
}

// remoteMemSampler follows a bridge's resident memory through its /metrics.
type remoteMemSampler struct {
	admin *adminScraper
	peak  atomic.Uint64
	stop  chan struct{}
	done  chan struct{}
}

func startRemoteMemSampler(ctx context.Context, admin *adminScraper) *remoteMemSampler {
	m := &remoteMemSampler{admin: admin, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			m.sample(ctx)
			select {
			case <-m.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

func (m *remoteMemSampler) sample(ctx context.Context) (uint64, error) {
	e, err := m.admin.scrape(ctx)
	if err != nil {
		return 0, err
	}
	v, ok := e.value("process_resident_memory_bytes")
	if !ok {
		return 0, errors.New("the bridge's /metrics has no process_resident_memory_bytes")
	}
	rss := uint64(v)
	for {
		old := m.peak.Load()
		if rss <= old || m.peak.CompareAndSwap(old, rss) {
			return rss, nil
		}
	}
}

// finish stops sampling and returns the peak and the memory now.
func (m *remoteMemSampler) finish(ctx context.Context) (peak, end uint64, err error) {
	close(m.stop)
	<-m.done
	end, err = m.sample(ctx)
	return m.peak.Load(), end, err
}
