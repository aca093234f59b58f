//go:build linux

package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// AddListener records the owner of a listening socket that predates the
// agent, so that children and orphans on its port name their process, and
// its accept queue's length and limit: a queue half full or more, or a limit
// below 64, turns the SYN watch on (see [SynWatchAuto]).
func (t *Tracer) AddListener(netns uint32, port uint16, pid uint32, comm string, backlog, max uint32) error {
	key := tcpspanListenerKey{Netns: netns, Port: port}
	var val tcpspanListenerState
	val.Owner.Pid = pid
	for i := 0; i < len(comm) && i < len(val.Owner.Comm)-1; i++ {
		val.Owner.Comm[i] = int8(comm[i])
	}
	high := queueHigh(backlog, max)
	if high {
		val.QueueHigh = 1
	}
	small := max < smallQueue
	if small {
		val.QueueSmall = 1
	}
	// NoExist: an entry from a listen() seen live is fresher.
	if err := t.objs.Listeners.Update(&key, &val, ebpf.UpdateNoExist); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("add listener :%d: %w", port, err)
	}
	switch {
	case t.watch == nil:
	case high:
		t.watch.ask(&SynWatchAsk{Netns: netns, Port: port, Why: WatchQueueHigh, Backlog: backlog, Max: max})
	case small:
		t.watch.ask(&SynWatchAsk{Netns: netns, Port: port, Why: WatchSmallQueue, Max: max})
	}
	return nil
}
