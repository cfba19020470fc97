module tuike/benchmarks/loadgen

go 1.26
