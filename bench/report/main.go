// Command report is make bench: scripts/bench.sh installs what is missing,
// builds bin/tcpspan and the bench's programs and runs `report bench`,
// which runs the load and the agents in every mode (knobs from the
// environment: config.go), leaves one directory per run with what it saw
// (the load tool's output, the namespace's TCP counters before and after,
// CPU times, the agent's log), reads them back and writes the tables,
// results.json and the chart. The other commands read such directories.
//
//	report bench -bin DIR               make bench (root); DIR holds rstorm, otlpsink, getpid, connloop
//	report line RUNDIR                  one progress line for a finished run
//	report jaeger -url URL RUNDIR       count the spans and events Jaeger holds for a run
//	                                    (appends key=value lines to stdout)
//	report bpfstats PRE BEFORE AFTER N  per-program run counts and times of the agent's
//	                                    BPF programs (bpftool prog show -j), N connections
//	report summarize [-json F] [-png F] [-conf S] RUNSDIR
//	                                    the table, results.json and the bar chart
//	report chart -png F RESULTS.json    the bar chart again, from a results.json
//
// It is in the bench module, not the agent's: its chart is drawn with
// gonum.org/v1/plot.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "bench":
		err = cmdBench(os.Args[2:])
	case "line":
		err = cmdLine(os.Args[2:])
	case "jaeger":
		err = cmdJaeger(os.Args[2:])
	case "bpfstats":
		err = cmdBPFStats(os.Args[2:])
	case "summarize":
		err = cmdSummarize(os.Args[2:])
	case "chart":
		err = cmdChart(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "report: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: report bench -bin DIR | line RUNDIR | jaeger -url URL RUNDIR | bpfstats PRE BEFORE AFTER N | summarize [-json F] [-png F] RUNSDIR | chart -png F RESULTS.json")
	os.Exit(2)
}
