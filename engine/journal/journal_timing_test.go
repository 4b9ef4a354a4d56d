package journal

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// BenchmarkAppend measures Append from parallel goroutines with group commit
// (default options), including the final Sync. It reports records/s, the
// average and largest number of records per fsync.
func BenchmarkAppend(b *testing.B) {
	j := openT(b, filepath.Join(b.TempDir(), "bench.journal"), Options{})
	var row atomic.Uint32
	b.ReportAllocs()
	b.SetBytes(RecordSize)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := j.Append(recFor(row.Add(1), 1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if err := j.Sync(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportGroups(b, j)
	j.Close()
}

// BenchmarkAppendSync is a writer that needs each record durable before it
// goes on (Append then Sync), from parallel goroutines: concurrent Syncs
// share fsyncs.
func BenchmarkAppendSync(b *testing.B) {
	j := openT(b, filepath.Join(b.TempDir(), "bench.journal"), Options{})
	var row atomic.Uint32
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			j.Append(recFor(row.Add(1), 1))
			if err := j.Sync(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportGroups(b, j)
	j.Close()
}

// BenchmarkBaselineWriteFsync is the standard-library baseline: one
// os.File.Write and one fsync per record.
func BenchmarkBaselineWriteFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "baseline"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var buf []byte
	b.ReportAllocs()
	b.SetBytes(RecordSize)
	b.ResetTimer()
	for i := range b.N {
		r := recFor(uint32(i), 1)
		buf = appendRecord(buf[:0], &r)
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func reportGroups(b *testing.B, j *Journal) {
	st := j.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if st.Syncs > 0 {
		b.ReportMetric(float64(st.Synced)/float64(st.Syncs), "records/fsync")
	}
	b.ReportMetric(float64(st.MaxGroup), "max-group")
}
