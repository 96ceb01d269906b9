package bench

import (
	"fmt"
	"io"
	"slices"
)

// Print writes a result as `ssobridge bench` shows it.
func Print(w io.Writer, r *Result) {
	what := map[string]string{"login": "sign-ins", "token": "code redemptions", "user": "user requests"}[r.Mode]
	fmt.Fprintf(w, "%s\n\n", r.Command)
	fmt.Fprintf(w, "  machine      %d CPUs, %s/%s, %s\n", r.Machine.CPUs, r.Machine.GOOS, r.Machine.GOARCH, r.Machine.Go)
	fmt.Fprintf(w, "  target       %s (store: %s)\n", r.Target, r.Store)
	fmt.Fprintf(w, "  mode         %s, concurrency %d, warmup %d sign-ins", r.Mode, r.Concurrency, r.Warmup)
	switch r.Mode {
	case "token":
		fmt.Fprintf(w, ", %d codes made first", r.Prepared)
	case "user":
		fmt.Fprintf(w, ", %d tokens obtained first", r.Prepared)
	}
	fmt.Fprintf(w, "\n  measured     %d %s in %.2fs, %d errors\n", r.Completed, what, r.ElapsedSeconds, r.Errors)
	fmt.Fprintf(w, "  throughput   %.1f %s/s\n\n", r.PerSecond, what)

	fmt.Fprintf(w, "  %-12s %8s %9s %9s %9s %9s\n", "latency (ms)", "count", "p50", "p90", "p99", "max")
	row := func(name string, s LatencyStats) {
		fmt.Fprintf(w, "  %-12s %8d %9.3f %9.3f %9.3f %9.3f\n", name, s.Count, s.P50, s.P90, s.P99, s.Max)
	}
	row(map[string]string{"login": "login", "token": "redemption", "user": "user"}[r.Mode], r.Latency)
	for _, name := range stepNames {
		if s, ok := r.Steps[name]; ok {
			row("  "+name, s)
		}
	}

	fmt.Fprintln(w)
	if len(r.ErrorsByKind) == 0 {
		fmt.Fprintln(w, "  errors       none")
	} else {
		kinds := make([]string, 0, len(r.ErrorsByKind))
		for k := range r.ErrorsByKind {
			kinds = append(kinds, k)
		}
		slices.SortFunc(kinds, func(a, b string) int { return int(r.ErrorsByKind[b] - r.ErrorsByKind[a]) })
		fmt.Fprintln(w, "  errors")
		for _, k := range kinds {
			fmt.Fprintf(w, "    %8d  %s\n", r.ErrorsByKind[k], k)
			if ex := r.ErrorExamples[k]; ex != "" && ex != k {
				fmt.Fprintf(w, "              the first: %s\n", ex)
			}
		}
	}
	per := map[string]string{"login": "sign-in", "token": "redemption", "user": "user request"}[r.Mode]
	if r.RedisCommandsPerOp != nil {
		fmt.Fprintf(w, "  Redis        %.1f commands per %s", *r.RedisCommandsPerOp, per)
		if r.RedisNote != "" {
			fmt.Fprintf(w, " (%s)", r.RedisNote)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "  Redis        %s\n", r.RedisNote)
	}
	if r.RedisRoundTripsPerOp != nil {
		fmt.Fprintf(w, "  Redis        %.1f round trips per %s, trace writes included (the bridge's count)\n", *r.RedisRoundTripsPerOp, per)
	} else if r.RoundTripsNote != "" {
		fmt.Fprintf(w, "  Redis        round trips %s\n", r.RoundTripsNote)
	}
	if r.RedisCPUPerOpMs != nil {
		fmt.Fprintf(w, "  Redis CPU    %.3f ms per %s (the server's INFO cpu)\n", *r.RedisCPUPerOpMs, per)
	}
	if r.BridgeCPUPerOpMs != nil {
		fmt.Fprintf(w, "  bridge CPU   %.3f ms per %s (its process_cpu_seconds_total)\n", *r.BridgeCPUPerOpMs, per)
	}
	if r.Memory != nil && r.Memory.EndRSSBytes > 0 {
		fmt.Fprintf(w, "  memory       bridge RSS peak %s, at the end %s\n               (%s)\n", mib(r.Memory.PeakRSSBytes), mib(r.Memory.EndRSSBytes), r.MemoryNote)
	} else if r.Memory != nil {
		rss := "not known on this system"
		if r.Memory.PeakRSSBytes > 0 {
			rss = mib(r.Memory.PeakRSSBytes)
		}
		fmt.Fprintf(w, "  memory       peak heap in use %s, peak RSS (VmHWM) %s\n               (%s)\n", mib(r.Memory.PeakHeapInUseBytes), rss, r.MemoryNote)
	} else {
		fmt.Fprintf(w, "  memory       %s\n", r.MemoryNote)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note         %s\n", n)
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
