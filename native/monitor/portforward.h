/* Port-forward mode: one connection to a port in a pod's network namespace. */
#ifndef CAPSA_PORTFORWARD_H
#define CAPSA_PORTFORWARD_H

/* Joins the network namespace at netns ("-": stay in this one), connects
 * to localhost:port (IPv4, then IPv6) and relays stdin to the connection
 * and the connection to stdout. Returns the process exit status: 0 after a
 * relayed connection, 1 when it could not connect (reason on stderr). */
int portforward_main(const char *netns, const char *port);

#endif
