package client

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// NewNATS returns a Client that asks bidpulse's NATS micro service
// ("bidpulse", subjects SubjectMultiplier, SubjectMultipliers,
// SubjectOpenRTB) over nc, which the caller keeps and closes. Answers are
// byte for byte the HTTP ones.
func NewNATS(nc *nats.Conn, o Options) (*Client, error) {
	if nc == nil {
		return nil, errors.New("bidpulse client: nil NATS connection")
	}
	return newClient(&natsTransport{nc: nc}, o), nil
}

type natsTransport struct {
	nc *nats.Conn
}

func (t *natsTransport) do(deadline time.Time, ep endpoint, query, body []byte, auth string, dst []byte) (int, []byte, error) {
	timeout := time.Until(deadline)
	if timeout <= 0 {
		return 0, dst, fmt.Errorf("%w: %s: no time left", errDeadline, ep.subject)
	}
	m := &nats.Msg{Subject: ep.subject}
	if ep == epMultiplier {
		m.Data = query
	} else {
		m.Data = body
		if len(query) > 0 {
			m.Header = nats.Header{QueryHeader: []string{string(query)}}
		}
	}
	if auth != "" {
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		m.Header[AuthHeader] = []string{auth}
	}
	r, err := t.nc.RequestMsg(m, timeout)
	switch {
	case errors.Is(err, nats.ErrTimeout):
		return 0, dst, fmt.Errorf("%w: %s: %v", errDeadline, ep.subject, err)
	case err != nil:
		return 0, dst, fmt.Errorf("bidpulse client: %s: %w", ep.subject, err)
	}
	status := 200
	if code := r.Header.Get(ErrorCodeHeader); code != "" {
		if status, err = strconv.Atoi(code); err != nil {
			return 0, dst, fmt.Errorf("%w: %s: invalid %s %q", errBadAnswer, ep.subject, ErrorCodeHeader, code)
		}
	}
	return status, append(dst, r.Data...), nil
}

func (t *natsTransport) close() {}
