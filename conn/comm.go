package conn

import "sync"

// maxComms bounds the commCache.
const maxComms = 4096

// commCache interns process names: the same few repeat on every record,
// and a string for each cost an allocation per record and more for the GC.
type commCache struct {
	mu sync.Mutex
	m  map[[16]int8]string
}

func (cc *commCache) get(b []int8) string {
	if len(b) != 16 {
		return comm(b)
	}
	k := [16]int8(b)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if s, ok := cc.m[k]; ok {
		return s
	}
	if cc.m == nil || len(cc.m) >= maxComms {
		cc.m = make(map[[16]int8]string)
	}
	s := comm(b)
	cc.m[k] = s
	return s
}

func comm(b []int8) string {
	buf := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		buf = append(buf, byte(c))
	}
	return string(buf)
}
