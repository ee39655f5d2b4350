/* serial2tcp_lo: the LiteX simulation's `serial` stream pads <-> one TCP client on 127.0.0.1.
 *
 * A copy of LiteX's sim module serial2tcp (litex/build/sim/core/modules/serial2tcp, BSD-2-Clause,
 * LiteX 2024.12) with three fixes for the rnnaccel simulated board:
 *   - it listens on INADDR_LOOPBACK only (stock: 0.0.0.0);
 *   - flow control host -> SoC: the receive ring is never overrun; when it is full the socket is
 *     not read (the event is paused), so TCP itself holds the sender back (stock: a 2048-byte ring
 *     without an overflow check, back-to-back write bursts were corrupted);
 *   - flow control SoC -> host: a transmit ring drained with non-blocking writes; `source_ready`
 *     drops only when it is full (stock: one blocking-or-lost write per byte);
 * plus: a client that disconnects is closed and a new one can connect; a new client replaces the
 * current one (one client at a time); the listening address is printed (and flushed) once bound:
 *   "[serial2tcp_lo] listening on 127.0.0.1:<port>"
 * Args (sim_config.js): {"port": <port>}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <event2/event.h>

#include <json-c/json.h>
#include "error.h"
#include "modules.h"

#define RX_SIZE 4096
#define TX_SIZE 65536

struct session_s {
  char *tx;
  char *tx_valid;
  char *tx_ready;
  char *rx;
  char *rx_valid;
  char *rx_ready;
  char *sys_clk;
  struct event *ev;
  int rx_paused;
  char rxbuf[RX_SIZE];
  int rx_start;
  int rx_len;
  char txbuf[TX_SIZE];
  int tx_start;
  int tx_len;
  int fd;
  clk_edge_state_t edge;
};

static struct event_base *base;

static int litex_sim_module_get_args(char *args, char *arg, char **val)
{
  int ret = RC_OK;
  json_object *jsobj = NULL;
  json_object *obj = NULL;
  char *value = NULL;
  int r;

  if(!arg || !args) {
    fprintf(stderr, "[serial2tcp_lo] missing argument %s\n", arg ? arg : "(null)");
    ret = RC_JSERROR;
    goto out;
  }
  jsobj = json_tokener_parse(args);
  if(NULL == jsobj || !json_object_is_type(jsobj, json_type_object)) {
    fprintf(stderr, "[serial2tcp_lo] bad json args: %s\n", args);
    ret = RC_JSERROR;
    goto out;
  }
  r = json_object_object_get_ex(jsobj, arg, &obj);
  if(!r) {
    fprintf(stderr, "[serial2tcp_lo] could not find \"%s\" in %s\n", arg, args);
    ret = RC_JSERROR;
    goto out;
  }
  value = strdup(json_object_get_string(obj));
out:
  if(jsobj)
    json_object_put(jsobj);
  *val = value;
  return ret;
}

static int litex_sim_module_pads_get(struct pad_s *pads, char *name, void **signal)
{
  void *sig = NULL;
  int i = 0;

  if(!pads || !name || !signal)
    return RC_INVARG;
  while(pads[i].name) {
    if(!strcmp(pads[i].name, name)) {
      sig = (void*)pads[i].signal;
      break;
    }
    i++;
  }
  *signal = sig;
  return RC_OK;
}

static int serial2tcp_lo_start(void *b)
{
  base = (struct event_base *)b;
  return RC_OK;
}

static void close_client(struct session_s *s)
{
  if(s->ev) {
    event_del(s->ev);
    event_free(s->ev);
    s->ev = NULL;
  }
  if(s->fd >= 0)
    close(s->fd);
  s->fd = -1;
  s->rx_paused = 0;
  s->rx_start = s->rx_len = 0;
  s->tx_start = s->tx_len = 0;
}

static void read_handler(int fd, short event, void *arg)
{
  struct session_s *s = (struct session_s*)arg;
  char buffer[1024];
  int space = RX_SIZE - s->rx_len;
  ssize_t n;
  int i;

  if(!(event & EV_READ))
    return;
  if(space <= 0) {               /* ring full: leave the bytes in the socket, stop watching it */
    event_del(s->ev);
    s->rx_paused = 1;
    return;
  }
  if(space > (int)sizeof(buffer))
    space = sizeof(buffer);
  n = read(fd, buffer, space);
  if(n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    close_client(s);             /* EOF or error: ready for the next client */
    return;
  }
  for(i = 0; i < n; i++) {
    s->rxbuf[(s->rx_start + s->rx_len) % RX_SIZE] = buffer[i];
    s->rx_len++;
  }
}

static void accept_conn_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *address,
                           int socklen, void *ctx)
{
  struct session_s *s = (struct session_s*)ctx;
  int one = 1;

  if(s->fd >= 0)                 /* one client at a time: a new client replaces the old one (whose */
    close_client(s);             /* EOF may simply not have been seen yet) */
  evutil_make_socket_nonblocking(fd);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  s->fd = fd;
  s->rx_start = s->rx_len = 0;
  s->tx_start = s->tx_len = 0;
  s->rx_paused = 0;
  s->ev = event_new(base, fd, EV_READ | EV_PERSIST, read_handler, s);
  event_add(s->ev, NULL);
}

static void accept_error_cb(struct evconnlistener *listener, void *ctx)
{
  eprintf("[serial2tcp_lo] accept error\n");
}

static int serial2tcp_lo_new(void **sess, char *args)
{
  int ret = RC_OK;
  struct session_s *s = NULL;
  char *cport = NULL;
  int port = 0;
  struct evconnlistener *listener;
  struct sockaddr_in sin;

  if(!sess)
    return RC_INVARG;
  ret = litex_sim_module_get_args(args, "port", &cport);
  if(RC_OK != ret)
    goto out;
  sscanf(cport, "%d", &port);
  free(cport);
  if(port <= 0 || port > 65535) {
    ret = RC_ERROR;
    fprintf(stderr, "[serial2tcp_lo] invalid port\n");
    goto out;
  }
  s = (struct session_s*)malloc(sizeof(struct session_s));
  if(!s) {
    ret = RC_NOENMEM;
    goto out;
  }
  memset(s, 0, sizeof(struct session_s));
  s->fd = -1;

  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(port);
  listener = evconnlistener_new_bind(base, accept_conn_cb, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
                                     (struct sockaddr*)&sin, sizeof(sin));
  if(!listener) {
    ret = RC_ERROR;
    fprintf(stderr, "[serial2tcp_lo] cannot bind 127.0.0.1:%d (port in use?)\n", port);
    fflush(stderr);
    goto out;
  }
  evconnlistener_set_error_cb(listener, accept_error_cb);
  printf("[serial2tcp_lo] listening on 127.0.0.1:%d\n", port);
  fflush(stdout);
out:
  *sess = (void*)s;
  return ret;
}

static int serial2tcp_lo_add_pads(void *sess, struct pad_list_s *plist)
{
  struct session_s *s = (struct session_s*)sess;
  struct pad_s *pads;

  if(!sess || !plist)
    return RC_INVARG;
  pads = plist->pads;
  if(!strcmp(plist->name, "serial")) {
    litex_sim_module_pads_get(pads, "sink_data", (void**)&s->rx);
    litex_sim_module_pads_get(pads, "sink_valid", (void**)&s->rx_valid);
    litex_sim_module_pads_get(pads, "sink_ready", (void**)&s->rx_ready);
    litex_sim_module_pads_get(pads, "source_data", (void**)&s->tx);
    litex_sim_module_pads_get(pads, "source_valid", (void**)&s->tx_valid);
    litex_sim_module_pads_get(pads, "source_ready", (void**)&s->tx_ready);
  }
  if(!strcmp(plist->name, "sys_clk"))
    litex_sim_module_pads_get(pads, "sys_clk", (void**)&s->sys_clk);
  return RC_OK;
}

static void flush_tx(struct session_s *s)
{
  while(s->fd >= 0 && s->tx_len) {
    int chunk = s->tx_len;
    ssize_t n;
    if(s->tx_start + chunk > TX_SIZE)
      chunk = TX_SIZE - s->tx_start;
    n = write(s->fd, s->txbuf + s->tx_start, chunk);
    if(n < 0) {
      if(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return;                  /* the client is slow: keep the bytes, try again next cycle */
      close_client(s);
      return;
    }
    s->tx_start = (s->tx_start + n) % TX_SIZE;
    s->tx_len -= n;
  }
}

static int serial2tcp_lo_tick(void *sess, uint64_t time_ps)
{
  struct session_s *s = (struct session_s*)sess;

  if(!clk_pos_edge(&s->edge, *s->sys_clk))
    return RC_OK;

  /* SoC -> host: take a byte when we offered ready during the cycle that ended */
  if(*s->tx_valid && *s->tx_ready) {
    if(s->fd >= 0) {
      s->txbuf[(s->tx_start + s->tx_len) % TX_SIZE] = *s->tx;
      s->tx_len++;
    }                            /* no client: the byte is dropped (nobody to deliver it to) */
  }
  if(s->tx_len)
    flush_tx(s);
  *s->tx_ready = s->tx_len < TX_SIZE;

  /* host -> SoC (same handshake as the stock module) */
  *s->rx_valid = 0;
  if(s->rx_len) {
    *s->rx = s->rxbuf[s->rx_start];
    *s->rx_valid = 1;
    if(*s->rx_ready) {
      s->rx_start = (s->rx_start + 1) % RX_SIZE;
      s->rx_len--;
    }
  }
  if(s->rx_paused && s->rx_len <= RX_SIZE / 2 && s->ev) {
    s->rx_paused = 0;
    event_add(s->ev, NULL);
  }
  return RC_OK;
}

static struct ext_module_s ext_mod = {
  "serial2tcp_lo",
  serial2tcp_lo_start,
  serial2tcp_lo_new,
  serial2tcp_lo_add_pads,
  NULL,
  serial2tcp_lo_tick
};

int litex_sim_ext_module_init(int (*register_module)(struct ext_module_s *))
{
  return register_module(&ext_mod);
}
