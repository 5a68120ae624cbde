// Command interop checks Stockade's C++ ttrpc against containerd's Go ttrpc
// (Debian's golang-github-containerd-ttrpc-dev) and containerd's generated
// Go API. ttrpc_interop_test builds it into a temp dir, offline:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o DIR/interop .
//
// interop server SOCKET: serves containerd's Events service (Forward) and a
// probe service on SOCKET, with the same-uid handshake containerd's shims
// use; prints "ready" once listening.
//
// interop client SOCKET: calls containerd.task.v2.Task on the C++ server
// at SOCKET through containerd's own Go client stubs; prints one line per
// check and exits 1 if any failed.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/runtime/v2/task"
	"github.com/containerd/ttrpc"
	ptypes "github.com/gogo/protobuf/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const probeService = "stockade.interop.v1.Probe"

// events records what Forward received.
type events struct {
	mu   sync.Mutex
	last string
}

func (e *events) Forward(ctx context.Context, r *eventsapi.ForwardRequest) (*ptypes.Empty, error) {
	env := r.Envelope
	if env == nil || env.Event == nil {
		return nil, status.Error(codes.InvalidArgument, "no envelope")
	}
	ns, _ := namespaces.Namespace(ctx)
	desc := fmt.Sprintf("md=%s ns=%s topic=%s type=%s ts=%d", ns, env.Namespace,
		env.Topic, env.Event.TypeUrl, env.Timestamp.Unix())
	if env.Event.TypeUrl == "containerd.events.TaskExit" {
		var exit eventtypes.TaskExit
		if err := exit.Unmarshal(env.Event.Value); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "TaskExit: %v", err)
		}
		desc += fmt.Sprintf(" container=%s id=%s pid=%d exit=%d exited=%d",
			exit.ContainerID, exit.ID, exit.Pid, exit.ExitStatus, exit.ExitedAt.Unix())
	}
	e.mu.Lock()
	e.last = desc
	e.mu.Unlock()
	return &ptypes.Empty{}, nil
}

func serve(path string) error {
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	srv, err := ttrpc.NewServer(ttrpc.WithServerHandshaker(ttrpc.UnixSocketRequireSameUser()))
	if err != nil {
		return err
	}
	ev := &events{}
	eventsapi.RegisterEventsService(srv, ev)
	srv.Register(probeService, map[string]ttrpc.Method{
		"Echo": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var v ptypes.BytesValue
			if err := unmarshal(&v); err != nil {
				return nil, err
			}
			return &v, nil
		},
		// "CODE:message" -> that status.
		"Fail": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var v ptypes.StringValue
			if err := unmarshal(&v); err != nil {
				return nil, err
			}
			var code int
			var msg string
			if i := strings.IndexByte(v.Value, ':'); i > 0 {
				fmt.Sscanf(v.Value[:i], "%d", &code)
				msg = v.Value[i+1:]
			}
			return nil, status.Error(codes.Code(code), msg)
		},
		"LastEvent": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			ev.mu.Lock()
			defer ev.mu.Unlock()
			return &ptypes.StringValue{Value: ev.last}, nil
		},
		"Sleep": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var v ptypes.Int64Value
			if err := unmarshal(&v); err != nil {
				return nil, err
			}
			time.Sleep(time.Duration(v.Value) * time.Millisecond)
			return &v, nil
		},
	})
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		srv.Close()
	}()
	fmt.Println("ready")
	err = srv.Serve(context.Background(), l)
	if err == ttrpc.ErrServerClosed {
		return nil
	}
	return err
}

type checker struct{ failed bool }

func (c *checker) check(name string, err error) {
	if err != nil {
		c.failed = true
		fmt.Printf("FAIL %s: %v\n", name, err)
		return
	}
	fmt.Printf("PASS %s\n", name)
}

func client(path string) error {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return err
	}
	tc := ttrpc.NewClient(conn)
	defer tc.Close()
	tasks := task.NewTaskClient(tc)
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	var c checker

	// A unary call with containerd's generated types; the C++ State handler
	// echoes the namespace it saw in `stdout`.
	c.check("state", func() error {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		r, err := tasks.State(tctx, &task.StateRequest{ID: "c1", ExecID: "e1"})
		if err != nil {
			return err
		}
		if r.ID != "c1" || r.ExecID != "e1" || r.Pid != 42 || r.Status != tasktypes.StatusRunning ||
			r.Bundle != "/run/bundle" || r.Stdout != "k8s.io" || r.ExitedAt.Unix() != 1700000000 {
			return fmt.Errorf("unexpected response %+v", r)
		}
		return nil
	}())

	// Errors keep their code and message, and containerd's errdefs maps them.
	c.check("not-found", func() error {
		_, err := tasks.Kill(ctx, &task.KillRequest{ID: "gone", Signal: 9})
		if status.Code(err) != codes.NotFound {
			return fmt.Errorf("want NotFound, got %v", err)
		}
		if !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
			return fmt.Errorf("errdefs does not see NotFound in %v", err)
		}
		if !strings.Contains(status.Convert(err).Message(), "process gone not found") {
			return fmt.Errorf("message lost: %v", err)
		}
		return nil
	}())

	c.check("unimplemented", func() error {
		_, err := tasks.Pause(ctx, &task.PauseRequest{ID: "c1"})
		if status.Code(err) != codes.Unimplemented {
			return fmt.Errorf("want Unimplemented, got %v", err)
		}
		return nil
	}())

	// Wait blocks in the C++ handler until Start is called; meanwhile many
	// State calls on the same connection complete.
	c.check("wait-concurrent", func() error {
		waitDone := make(chan error, 1)
		go func() {
			r, err := tasks.Wait(ctx, &task.WaitRequest{ID: "c1"})
			if err == nil && r.ExitStatus != 7 {
				err = fmt.Errorf("exit status %d", r.ExitStatus)
			}
			waitDone <- err
		}()
		time.Sleep(100 * time.Millisecond)
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				id := fmt.Sprintf("c%d", i)
				r, err := tasks.State(ctx, &task.StateRequest{ID: id})
				if err == nil && r.ID != id {
					err = fmt.Errorf("state %s answered for %s", id, r.ID)
				}
				if err != nil {
					errs <- err
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			return err
		}
		select {
		case err := <-waitDone:
			return fmt.Errorf("wait returned before start: %v", err)
		default:
		}
		if _, err := tasks.Start(ctx, &task.StartRequest{ID: "c1"}); err != nil {
			return err
		}
		select {
		case err := <-waitDone:
			return err
		case <-time.After(10 * time.Second):
			return fmt.Errorf("wait did not return")
		}
	}())

	if c.failed {
		return fmt.Errorf("some checks failed")
	}
	return nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: interop server|client SOCKET")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = serve(os.Args[2])
	case "client":
		err = client(os.Args[2])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
}
