package proxy

import "testing"

// mergeKillReplies gives the one answer of a single Redis over the masters' answers.
func TestMergeKillReplies(t *testing.T) {
	const (
		ok         = "+OK\r\n"
		notbusy    = "-NOTBUSY No scripts in execution right now.\r\n"
		unkillable = "-UNKILLABLE Sorry the script already executed write commands against the dataset.\r\n"
		busyFn     = "-BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.\r\n"
		down       = "-ERR proxy: command not sent: 127.0.0.1:1 unreachable: connection refused\r\n"
	)
	for _, tc := range []struct {
		replies []string
		want    string
	}{
		{[]string{notbusy, ok, notbusy}, ok},
		{[]string{notbusy, notbusy, notbusy}, notbusy},
		{[]string{notbusy, unkillable, notbusy}, unkillable},
		{[]string{busyFn, notbusy, notbusy}, busyFn},
		{[]string{notbusy, down, notbusy}, down},
		{[]string{down, ok}, ok},
		{[]string{"-ERR unknown subcommand\r\n", "-ERR unknown subcommand\r\n"}, "-ERR unknown subcommand\r\n"},
	} {
		reps := make([][]byte, len(tc.replies))
		for i, r := range tc.replies {
			reps[i] = []byte(r)
		}
		if got := string(mergeKillReplies(reps)); got != tc.want {
			t.Errorf("mergeKillReplies(%q) = %q, want %q", tc.replies, got, tc.want)
		}
	}
}

// Only -BUSY and -LOADING say that a node is executing.
func TestExecutingReply(t *testing.T) {
	for rep, want := range map[string]string{
		"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n": "busy",
		"-LOADING Redis is loading the dataset in memory\r\n":                                         "loading",
		"-BUSYGROUP Consumer Group name already exists\r\n":                                           "",
		"-BUSYKEY Target key name already exists.\r\n":                                                "",
		"+PONG\r\n":               "",
		"-ERR\r\n":                "",
		"-BUSY\r\n":               "busy",
		"-NOTBUSY No scripts\r\n": "",
	} {
		got, ok := executingReply([]byte(rep))
		if got != want || ok != (want != "") {
			t.Errorf("executingReply(%q) = %q, %v; want %q", rep, got, ok, want)
		}
	}
}
