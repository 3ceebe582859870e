//! DHCP and TFTP client used to prove what a PXE firmware would be offered.
