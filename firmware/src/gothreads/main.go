// gothreads: the Go runtime in the guest: OS threads under goroutines, channels, sync.WaitGroup,
// time.Sleep on the runtime's timers (epoll), and a garbage collector that must keep up with an
// allocation rate well beyond the memory the guest has. Every line it prints is independent of
// scheduling, so the guest's output can be compared with a native run.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"
)

func pipeline() {
	// three stages linked by channels
	src := make(chan int)
	sq := make(chan int, 8)
	go func() {
		for i := 1; i <= 1000; i++ {
			src <- i
		}
		close(src)
	}()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := range src {
				sq <- v * v
			}
		}()
	}
	go func() { wg.Wait(); close(sq) }()
	sum := 0
	for v := range sq {
		sum += v
	}
	fmt.Println("pipeline: sum of squares 1..1000 =", sum)
}

func mutexes() {
	var mu sync.Mutex
	var wg sync.WaitGroup
	counter := 0
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
				if i%100 == 0 {
					runtime.Gosched()
				}
			}
		}()
	}
	wg.Wait()
	fmt.Println("mutex: counter =", counter)
}

func sleeps() {
	// sleepers wake in the order of their deadlines, whatever order they started in
	out := make(chan int, 5)
	start := time.Now()
	for _, ms := range []int{50, 10, 40, 20, 30} {
		ms := ms
		go func() {
			time.Sleep(time.Duration(ms) * time.Millisecond)
			out <- ms
		}()
	}
	order := []int{}
	for i := 0; i < 5; i++ {
		order = append(order, <-out)
	}
	fmt.Println("sleep: woke in order", order, "after at least 50ms:", time.Since(start) >= 50*time.Millisecond)
	select {
	case <-time.After(20 * time.Millisecond):
		fmt.Println("sleep: time.After fired")
	}
}

type node struct {
	next *node
	data [248]byte
}

func garbage(totalMB int) {
	// allocate totalMB in short-lived lists, keeping a small live set; the GC must reclaim as we go
	debug.SetGCPercent(20)
	var keep []*node
	check := 0
	for round := 0; round < totalMB; round++ {
		var head *node
		for i := 0; i < 4096; i++ { // 4096 * 256 bytes = 1 MiB per round
			n := &node{next: head}
			n.data[0] = byte(round)
			n.data[247] = byte(i)
			head = n
		}
		if round%16 == 0 {
			keep = append(keep, head) // a live set that grows slowly
		}
		for n := head; n != nil; n = n.next {
			check += int(n.data[0])
		}
	}
	// the kept lists are intact
	intact := true
	for k, head := range keep {
		i := 4095
		for n := head; n != nil; n = n.next {
			if n.data[0] != byte(k*16) || n.data[247] != byte(i) {
				intact = false
			}
			i--
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("gc: allocated %d MiB, checksum %d, kept %d lists intact: %v, collections > 0: %v, heap < 48 MiB: %v\n",
		totalMB, check, len(keep), intact, ms.NumGC > 0, ms.HeapSys < 48<<20)
}

func main() {
	// four Ps whatever the CPU count: several OS threads run goroutines at once (in the guest, by turns)
	runtime.GOMAXPROCS(4)
	what := "all"
	if len(os.Args) > 1 {
		what = os.Args[1]
	}
	if what == "all" || what == "pipeline" {
		pipeline()
	}
	if what == "all" || what == "mutex" {
		mutexes()
	}
	if what == "all" || what == "sleep" {
		sleeps()
	}
	if what == "all" || what == "gc" {
		mb := 256
		if len(os.Args) > 2 {
			fmt.Sscan(os.Args[2], &mb)
		}
		garbage(mb)
	}
	fmt.Println("done")
}
