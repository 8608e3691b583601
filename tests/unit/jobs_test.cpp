// SPDX-License-Identifier: GPL-2.0-or-later
// (being written)
int main() { return 0; }
