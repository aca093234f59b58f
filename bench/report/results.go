package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"time"
)

// Results is bench/results.json.
type Results struct {
	Date    string   `json:"date"`
	Commit  string   `json:"commit"`
	Machine Machine  `json:"machine"`
	Load    string   `json:"load"`
	Modes   []*Mode  `json:"modes"`
	Targets []Target `json:"targets"`
	Runs    []*Run   `json:"runs"`
}

// Machine describes where the run was.
type Machine struct {
	NProc  int     `json:"nproc"`
	Kernel string  `json:"kernel"`
	CPU    string  `json:"cpu"`
	MemGB  float64 `json:"mem_gb"`
}

func machine() Machine {
	m := Machine{NProc: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(strings.TrimPrefix(strings.Split(string(b), "\n")[0], "MemTotal:"), "%f", &kb)
		m.MemGB = math.Round(kb/1024/1024*10) / 10
	}
	return m
}

func cmdSummarize(args []string) error {
	fs := flag.NewFlagSet("summarize", flag.ExitOnError)
	jsonOut := fs.String("json", "", "write the results here")
	pngOut := fs.String("png", "", "write the bar chart here")
	conf := fs.String("conf", "", "the load, in words, for the header")
	commit := fs.String("commit", "", "the commit measured")
	fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	return summarizeTo(fs.Arg(0), *jsonOut, *pngOut, *commit, *conf)
}

// summarizeTo prints the tables of the runs in runsDir and writes
// results.json and the chart (each skipped when its path is "").
func summarizeTo(runsDir, jsonOut, pngOut, commit, conf string) error {
	runs, err := loadRuns(runsDir)
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		return fmt.Errorf("no runs in %s", runsDir)
	}
	modes := summarize(runs)
	for _, m := range modes {
		for _, r := range runs {
			if r.Mode == m.Mode {
				m.runs = append(m.runs, r)
			}
		}
	}
	res := &Results{
		Date: time.Now().UTC().Format(time.RFC3339), Commit: commit, Machine: machine(), Load: conf,
		Modes: modes, Targets: targets(modes), Runs: runs,
	}
	printTables(os.Stdout, res)
	if jsonOut != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Printf("report: wrote %s\n", jsonOut)
	}
	if pngOut != "" {
		if err := writeChart(pngOut, res); err != nil {
			return err
		}
		fmt.Printf("report: wrote %s\n", pngOut)
	}
	return nil
}

// cmdChart draws the chart of a results.json again, for when the chart
// changes after the runs' directories are gone.
func cmdChart(args []string) error {
	fs := flag.NewFlagSet("chart", flag.ExitOnError)
	pngOut := fs.String("png", "", "write the bar chart here")
	fs.Parse(args)
	if fs.NArg() != 1 || *pngOut == "" {
		usage()
	}
	b, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return err
	}
	for _, m := range res.Modes {
		for _, r := range res.Runs {
			if r.Mode == m.Mode {
				m.runs = append(m.runs, r)
			}
		}
	}
	return writeChart(*pngOut, &res)
}
