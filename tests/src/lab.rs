//! OPD networks out of network namespaces: hosts on 198.18.0.0/15, snmpd devices, cut links, loss.
