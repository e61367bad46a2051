// imagestub stands in, inside the offline critest images that
// hack/critest/images.sh builds, for the programs of the upstream test
// images: nginx, httpd, pause and nonewprivs' nnp. It is one static binary;
// the name it is started as picks the part it plays. critest only looks at
// what those programs show from outside (a port that answers HTTP, a process
// name, a pid file, a log line, the effective uid), so that is all it does.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// titlePrefix marks the re-exec'ed nginx: its argv[0] is the title real
// nginx gives its master process ("nginx: master process nginx -g ...").
// critest's PID-namespace specs look for "master process" in
// /proc/1/cmdline; pidof finds it by comm, which stays the file name.
const titlePrefix = "nginx: master process "

func main() {
	name := filepath.Base(os.Args[0])
	if strings.HasPrefix(os.Args[0], titlePrefix) {
		name = "nginx"
	} else if name == "nginx" {
		if exe, err := os.Executable(); err == nil {
			title := titlePrefix + strings.Join(os.Args, " ")
			err = syscall.Exec(exe, []string{title}, os.Environ())
			fmt.Fprintln(os.Stderr, "nginx: re-exec for the process title:", err)
		}
	}
	switch name {
	case "nginx":
		port := nginxPort()
		if err := os.WriteFile("/var/run/nginx.pid", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "nginx: pid file:", err)
		}
		serve(name, port, "/usr/share/nginx/html")
	case "httpd":
		// The lines Apache prints on start; critest looks for "httpd" in the log.
		now := time.Now().Format("Mon Jan 02 15:04:05.000000 2006")
		fmt.Fprintf(os.Stderr, "[%s] [mpm_event:notice] [pid %d:tid 1] AH00489: Apache/2.4.39 (Unix) configured -- resuming normal operations\n", now, os.Getpid())
		fmt.Fprintf(os.Stderr, "[%s] [core:notice] [pid %d:tid 1] AH00094: Command line: 'httpd -D FOREGROUND'\n", now, os.Getpid())
		serve(name, 80, "/usr/local/apache2/htdocs")
	case "pause":
		pause()
	case "nnp":
		// Installed setuid root: what it prints tells whether no_new_privs held.
		fmt.Printf("Effective uid: %d\n", os.Geteuid())
	default:
		fmt.Fprintf(os.Stderr, "imagestub: started as %q; link it as nginx, httpd, pause or nnp\n", name)
		os.Exit(2)
	}
}

// nginxPort reads the first "listen N;" of /etc/nginx/conf.d/*.conf, as the
// images configure their server blocks (80, or 12003 for hostnet-nginx).
func nginxPort() int {
	files, _ := filepath.Glob("/etc/nginx/conf.d/*.conf")
	re := regexp.MustCompile(`(?m)^\s*listen\s+(\d+)\s*;`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if m := re.FindSubmatch(b); m != nil {
			if p, err := strconv.Atoi(string(m[1])); err == nil {
				return p
			}
		}
	}
	return 80
}

// serve answers HTTP from root on port until a stop signal, logging one
// access line per request to stdout like the real servers.
func serve(name string, port int, root string) {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: listen on %d: %v\n", name, port, err)
		os.Exit(1)
	}
	files := http.FileServer(http.Dir(root))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		files.ServeHTTP(w, r)
		fmt.Printf("%s - - [%s] \"%s %s %s\" \"%s\"\n", r.RemoteAddr, time.Now().Format("02/Jan/2006:15:04:05 -0700"),
			r.Method, r.URL.RequestURI(), r.Proto, r.UserAgent())
	})
	// httpd's image stops it with SIGWINCH (its StopSignal), nginx with SIGQUIT.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGWINCH)
	go func() {
		s := <-stop
		fmt.Fprintf(os.Stderr, "%s: %v, exiting\n", name, s)
		os.Exit(0)
	}()
	err = http.Serve(ln, handler)
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	os.Exit(1)
}

// pause is a sandbox's idle PID 1: it reaps children and exits on SIGINT or
// SIGTERM.
func pause() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
