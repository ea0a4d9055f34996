/*
 * The tiny test guest: just enough freestanding code to drive isola-vmm's
 * boot path, legacy ports and virtio-mmio devices (blk, vsock), including
 * malformed descriptor chains a hostile guest could submit.
 *
 * It reads its command line from the PVH start_info and acts on `tiny.*`
 * words (see tests/vmm_tiny.rs for what each test expects):
 *
 *   tiny.blk=1 tiny.blkwrite=1 tiny.hostile=1
 *   tiny.vsock=PORT tiny.vsockhostile=1
 *   tiny.exit=poweroff|reset|triple|spin
 *
 * Everything it reports goes to COM1 as lines starting with "TINY: ".
 * Interrupts stay off; completions are found by polling the used rings,
 * always with a time limit, so a device that never answers shows up as a
 * "timeout" line instead of a hung guest.
 */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long usize;

/* ---- tiny libc ---------------------------------------------------------- */

void *memset(void *d, int c, usize n)
{
	u8 *p = d;
	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, usize n)
{
	u8 *p = d;
	const u8 *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

static int memeq(const void *a, const void *b, usize n)
{
	const u8 *p = a, *q = b;
	while (n--)
		if (*p++ != *q++)
			return 0;
	return 1;
}

static usize strlen_(const char *s)
{
	usize n = 0;
	while (s[n])
		n++;
	return n;
}

/* ---- port and MMIO access ----------------------------------------------- */

static inline void outb(u16 port, u8 v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline u32 mmio_r(u64 addr)
{
	return *(volatile u32 *)addr;
}

static inline void mmio_w(u64 addr, u32 v)
{
	*(volatile u32 *)addr = v;
}

/* Big buffers the code initialises itself before use: kept out of .bss so
 * the boot code need not zero them (slow where the guest is emulated). */
#define NOINIT __attribute__((section(".noinit")))

#define barrier() __asm__ volatile("" : : : "memory")
#define mb() __asm__ volatile("mfence" : : : "memory")

static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause");
}

/* Time limits, in TSC ticks (about a second per 1e9 on today's hosts). */
#define WAIT_NORMAL (20ull * 1000 * 1000 * 1000)
#define WAIT_HOSTILE (3ull * 1000 * 1000 * 1000)

/* ---- serial console ----------------------------------------------------- */

#define COM1 0x3f8
#define LSR_THR_EMPTY 0x20

static void putc_(char c)
{
	/* Bounded: a missing UART reads 0xff, which has the bit set anyway. */
	for (u32 i = 0; i < 1000000 && !(inb(COM1 + 5) & LSR_THR_EMPTY); i++)
		cpu_relax();
	outb(COM1, (u8)c);
}

static void puts_(const char *s)
{
	while (*s)
		putc_(*s++);
}

static void putn(const char *s, usize n)
{
	for (usize i = 0; i < n && s[i]; i++)
		putc_(s[i]);
}

static void put_dec(u64 v)
{
	char buf[21];
	int i = 20;
	buf[i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	puts_(&buf[i]);
}

static void put_hex(u64 v)
{
	char buf[19];
	int i = 18;
	buf[i] = 0;
	do {
		buf[--i] = "0123456789abcdef"[v & 0xf];
		v >>= 4;
	} while (v);
	buf[--i] = 'x';
	buf[--i] = '0';
	puts_(&buf[i]);
}

/* Bytes as text; anything not printable shows as '.'. */
static void put_printable(const u8 *p, usize n)
{
	for (usize i = 0; i < n; i++)
		putc_(p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '.');
}

/* ---- command line -------------------------------------------------------- */

/* hvm_start_info (version 1): magic at 0, cmdline_paddr at 24, memmap_paddr
 * at 40, memmap_entries at 48. */
#define HVM_START_MAGIC 0x336ec578u

static const char *cmdline = "";
static u64 ram_end = 256ull << 20;

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == 0;
}

/* Finds the word `key=VALUE`; returns VALUE's start and length via *len,
 * or 0 when absent. */
static const char *param(const char *key, usize *len)
{
	usize kl = strlen_(key);
	const char *p = cmdline;
	while (*p) {
		while (*p == ' ')
			p++;
		const char *w = p;
		while (!is_space(*p))
			p++;
		if ((usize)(p - w) > kl && memeq(w, key, kl) && w[kl] == '=') {
			*len = (usize)(p - w) - kl - 1;
			return w + kl + 1;
		}
	}
	return 0;
}

static int param_is(const char *key, const char *want)
{
	usize n;
	const char *v = param(key, &n);
	return v && n == strlen_(want) && memeq(v, want, n);
}

static u64 parse_num(const char *s, usize n, int *ok)
{
	u64 v = 0;
	int base = 10;
	usize i = 0;
	*ok = 0;
	if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
	}
	for (; i < n; i++) {
		char c = s[i];
		u32 d;
		if (c >= '0' && c <= '9')
			d = (u32)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = (u32)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = (u32)(c - 'A' + 10);
		else
			break;
		v = v * (u64)base + d;
		*ok = 1;
	}
	return v;
}

static u64 param_num(const char *key, u64 dflt)
{
	usize n;
	int ok;
	const char *v = param(key, &n);
	if (!v)
		return dflt;
	u64 x = parse_num(v, n, &ok);
	return ok ? x : dflt;
}

/* ---- virtio-mmio --------------------------------------------------------- */

#define VIRTIO_MAGIC 0x74726976u
#define R_MAGIC 0x000
#define R_VERSION 0x004
#define R_DEVICE_ID 0x008
#define R_DEVICE_FEATURES 0x010
#define R_DEVICE_FEATURES_SEL 0x014
#define R_DRIVER_FEATURES 0x020
#define R_DRIVER_FEATURES_SEL 0x024
#define R_QUEUE_SEL 0x030
#define R_QUEUE_NUM_MAX 0x034
#define R_QUEUE_NUM 0x038
#define R_QUEUE_READY 0x044
#define R_QUEUE_NOTIFY 0x050
#define R_INTERRUPT_STATUS 0x060
#define R_INTERRUPT_ACK 0x064
#define R_STATUS 0x070
#define R_QUEUE_DESC_LOW 0x080
#define R_QUEUE_DESC_HIGH 0x084
#define R_QUEUE_DRIVER_LOW 0x090
#define R_QUEUE_DRIVER_HIGH 0x094
#define R_QUEUE_DEVICE_LOW 0x0a0
#define R_QUEUE_DEVICE_HIGH 0x0a4
#define R_CONFIG 0x100

#define S_ACKNOWLEDGE 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 0x40

#define DESC_F_NEXT 1
#define DESC_F_WRITE 2

#define QSIZE 8

struct desc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};

struct avail {
	u16 flags;
	u16 idx;
	u16 ring[QSIZE];
	u16 used_event;
};

struct used_elem {
	u32 id;
	u32 len;
};

struct used {
	u16 flags;
	u16 idx;
	struct used_elem ring[QSIZE];
	u16 avail_event;
};

struct vq {
	u64 base;
	u16 index;
	volatile struct desc *desc;
	volatile struct avail *avail;
	volatile struct used *used;
	u16 next_avail;
	u16 used_seen;
};

/* One page per queue: descriptors at 0, driver ring at 0x400, device ring at
 * 0x800. Queue 0 is the disk's, 1..3 vsock's rx, tx and event queues. */
static u8 qpages[4][4096] NOINIT __attribute__((aligned(4096)));

/* Finds the n-th `virtio_mmio.device=SIZE@ADDR:IRQ` entry with device id
 * `want`; returns its base or 0. */
static u64 find_device(u32 want)
{
	static const char key[] = "virtio_mmio.device=";
	usize kl = sizeof(key) - 1;
	const char *p = cmdline;
	while (*p) {
		while (*p == ' ')
			p++;
		const char *w = p;
		while (!is_space(*p))
			p++;
		if ((usize)(p - w) <= kl || !memeq(w, key, kl))
			continue;
		const char *at = w + kl;
		while (at < p && *at != '@')
			at++;
		if (at >= p)
			continue;
		int ok;
		u64 base = parse_num(at + 1, (usize)(p - at - 1), &ok);
		if (!ok || base == 0 || base >= (4ull << 30))
			continue;
		if (mmio_r(base + R_MAGIC) != VIRTIO_MAGIC || mmio_r(base + R_VERSION) != 2)
			continue;
		if (mmio_r(base + R_DEVICE_ID) == want)
			return base;
	}
	return 0;
}

/* The virtio 1.x init dance, accepting VIRTIO_F_VERSION_1 only. */
static int vdev_init(u64 base, struct vq *qs, u16 nq, u16 first_page)
{
	mmio_w(base + R_STATUS, 0);
	mmio_w(base + R_STATUS, S_ACKNOWLEDGE);
	mmio_w(base + R_STATUS, S_ACKNOWLEDGE | S_DRIVER);
	mmio_w(base + R_DEVICE_FEATURES_SEL, 1);
	if (!(mmio_r(base + R_DEVICE_FEATURES) & 1)) {
		puts_("TINY: device does not offer VERSION_1\n");
		return -1;
	}
	mmio_w(base + R_DRIVER_FEATURES_SEL, 0);
	mmio_w(base + R_DRIVER_FEATURES, 0);
	mmio_w(base + R_DRIVER_FEATURES_SEL, 1);
	mmio_w(base + R_DRIVER_FEATURES, 1);
	mmio_w(base + R_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
	if (!(mmio_r(base + R_STATUS) & S_FEATURES_OK)) {
		puts_("TINY: FEATURES_OK did not stick\n");
		return -1;
	}
	for (u16 i = 0; i < nq; i++) {
		struct vq *q = &qs[i];
		u8 *page = qpages[first_page + i];
		memset(page, 0, 4096);
		q->base = base;
		q->index = i;
		q->desc = (volatile struct desc *)page;
		q->avail = (volatile struct avail *)(page + 0x400);
		q->used = (volatile struct used *)(page + 0x800);
		q->next_avail = 0;
		q->used_seen = 0;
		mmio_w(base + R_QUEUE_SEL, i);
		u32 max = mmio_r(base + R_QUEUE_NUM_MAX);
		if (max < QSIZE) {
			puts_("TINY: queue too small\n");
			return -1;
		}
		mmio_w(base + R_QUEUE_NUM, QSIZE);
		u64 d = (u64)q->desc, a = (u64)q->avail, u = (u64)q->used;
		mmio_w(base + R_QUEUE_DESC_LOW, (u32)d);
		mmio_w(base + R_QUEUE_DESC_HIGH, (u32)(d >> 32));
		mmio_w(base + R_QUEUE_DRIVER_LOW, (u32)a);
		mmio_w(base + R_QUEUE_DRIVER_HIGH, (u32)(a >> 32));
		mmio_w(base + R_QUEUE_DEVICE_LOW, (u32)u);
		mmio_w(base + R_QUEUE_DEVICE_HIGH, (u32)(u >> 32));
		mmio_w(base + R_QUEUE_READY, 1);
	}
	mmio_w(base + R_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	if (mmio_r(base + R_STATUS) & S_NEEDS_RESET) {
		puts_("TINY: device needs reset after DRIVER_OK\n");
		return -1;
	}
	return 0;
}

static void set_desc(struct vq *q, u16 i, u64 addr, u32 len, u16 flags, u16 next)
{
	q->desc[i].addr = addr;
	q->desc[i].len = len;
	q->desc[i].flags = flags;
	q->desc[i].next = next;
}

/* Make the chain at `head` available and kick the device. */
static void vq_push(struct vq *q, u16 head, int kick)
{
	q->avail->ring[q->next_avail % QSIZE] = head;
	mb();
	q->next_avail++;
	q->avail->idx = q->next_avail;
	mb();
	if (kick)
		mmio_w(q->base + R_QUEUE_NOTIFY, q->index);
}

/* Next used element, or -1 after `limit` TSC ticks. */
static int vq_pop_used(struct vq *q, struct used_elem *out, u64 limit)
{
	u64 t0 = rdtsc();
	while (q->used->idx == q->used_seen) {
		if (rdtsc() - t0 > limit)
			return -1;
		cpu_relax();
	}
	mb();
	out->id = q->used->ring[q->used_seen % QSIZE].id;
	out->len = q->used->ring[q->used_seen % QSIZE].len;
	q->used_seen++;
	/* Keep the interrupt status clean; we never take the interrupt. */
	u32 isr = mmio_r(q->base + R_INTERRUPT_STATUS);
	if (isr)
		mmio_w(q->base + R_INTERRUPT_ACK, isr);
	return 0;
}

/* ---- virtio-blk ---------------------------------------------------------- */

#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8

struct blk_hdr {
	u32 type;
	u32 reserved;
	u64 sector;
};

static struct vq blkq;
static struct blk_hdr bhdr __attribute__((aligned(16)));
static u8 bdata[512] NOINIT __attribute__((aligned(512)));
static volatile u8 bstatus;
static u8 sector0[512] NOINIT;
static u64 capacity;

/* One request of header + optional data + status. Returns the status byte
 * (0xff when the device did not write one) or -1 on timeout. */
static int blk_request(u32 type, u64 sector, void *buf, u32 len, int device_writes)
{
	bhdr.type = type;
	bhdr.reserved = 0;
	bhdr.sector = sector;
	bstatus = 0xff;
	u16 n = 0;
	set_desc(&blkq, n, (u64)&bhdr, sizeof(bhdr), DESC_F_NEXT, (u16)(n + 1));
	n++;
	if (len) {
		set_desc(&blkq, n, (u64)buf, len, DESC_F_NEXT | (device_writes ? DESC_F_WRITE : 0),
			 (u16)(n + 1));
		n++;
	}
	set_desc(&blkq, n, (u64)&bstatus, 1, DESC_F_WRITE, 0);
	vq_push(&blkq, 0, 1);
	struct used_elem e;
	if (vq_pop_used(&blkq, &e, WAIT_NORMAL))
		return -1;
	return bstatus;
}

/* The check after each hostile chain: does a plain read still work? */
static int blk_valid_read(void)
{
	memset(bdata, 0, sizeof(bdata));
	int st = blk_request(BLK_T_IN, 0, bdata, 512, 1);
	return st == 0 && memeq(bdata, sector0, 512);
}

static void hostile_report(const char *name, int timed_out, struct used_elem *e)
{
	puts_("TINY: hostile ");
	puts_(name);
	if (timed_out) {
		puts_(" no used entry (timeout)");
	} else {
		puts_(" used len=");
		put_dec(e->len);
		puts_(" status=");
		put_dec(bstatus);
	}
	putc_('\n');
	puts_("TINY: hostile ");
	puts_(name);
	puts_(blk_valid_read() ? " survived\n" : " BROKEN: the next valid read failed\n");
}

/* Submit the chain at descriptor 0 as built by the caller and report. */
static void hostile_submit(const char *name)
{
	struct used_elem e = { 0, 0 };
	vq_push(&blkq, 0, 1);
	int to = vq_pop_used(&blkq, &e, WAIT_HOSTILE);
	hostile_report(name, to, &e);
}

static void blk_hostile(void)
{
	/* Descriptor address far outside guest memory. */
	bhdr.type = BLK_T_IN;
	bhdr.sector = 0;
	bstatus = 0xff;
	set_desc(&blkq, 0, 0x700000000000ull, sizeof(bhdr), DESC_F_NEXT, 1);
	set_desc(&blkq, 1, (u64)bdata, 512, DESC_F_NEXT | DESC_F_WRITE, 2);
	set_desc(&blkq, 2, (u64)&bstatus, 1, DESC_F_WRITE, 0);
	hostile_submit("oob-addr");

	/* A data buffer whose length runs past the end of RAM. */
	bstatus = 0xff;
	set_desc(&blkq, 0, (u64)&bhdr, sizeof(bhdr), DESC_F_NEXT, 1);
	set_desc(&blkq, 1, (u64)bdata, (u32)(ram_end - (u64)bdata + 4096),
		 DESC_F_NEXT | DESC_F_WRITE, 2);
	set_desc(&blkq, 2, (u64)&bstatus, 1, DESC_F_WRITE, 0);
	hostile_submit("past-ram");

	/* Two descriptors whose `next` point at each other. */
	bstatus = 0xff;
	set_desc(&blkq, 0, (u64)&bhdr, sizeof(bhdr), DESC_F_NEXT, 1);
	set_desc(&blkq, 1, (u64)bdata, 512, DESC_F_NEXT | DESC_F_WRITE, 0);
	hostile_submit("loop");

	/* The status descriptor is device-readable (wrong direction). */
	bstatus = 0xff;
	set_desc(&blkq, 0, (u64)&bhdr, sizeof(bhdr), DESC_F_NEXT, 1);
	set_desc(&blkq, 1, (u64)bdata, 512, DESC_F_NEXT | DESC_F_WRITE, 2);
	set_desc(&blkq, 2, (u64)&bstatus, 1, 0, 0);
	hostile_submit("status-ro");

	/* A chain of just a header. */
	bstatus = 0xff;
	set_desc(&blkq, 0, (u64)&bhdr, sizeof(bhdr), 0, 0);
	hostile_submit("header-only");

	/* A well-formed read of sectors past the end of the disk. */
	bhdr.sector = capacity + 10;
	bstatus = 0xff;
	set_desc(&blkq, 0, (u64)&bhdr, sizeof(bhdr), DESC_F_NEXT, 1);
	set_desc(&blkq, 1, (u64)bdata, 512, DESC_F_NEXT | DESC_F_WRITE, 2);
	set_desc(&blkq, 2, (u64)&bstatus, 1, DESC_F_WRITE, 0);
	hostile_submit("past-end");
	bhdr.sector = 0;

	puts_("TINY: hostile done\n");
}

static void blk_run(void)
{
	u64 base = find_device(2);
	if (!base) {
		puts_("TINY: blk: no virtio-blk device\n");
		return;
	}
	puts_("TINY: blk device at ");
	put_hex(base);
	putc_('\n');
	if (vdev_init(base, &blkq, 1, 0)) {
		puts_("TINY: blk init failed\n");
		return;
	}
	capacity = mmio_r(base + R_CONFIG) | ((u64)mmio_r(base + R_CONFIG + 4) << 32);
	puts_("TINY: blk capacity=");
	put_dec(capacity);
	putc_('\n');

	int st = blk_request(BLK_T_IN, 0, bdata, 512, 1);
	if (st != 0) {
		puts_("TINY: blk read failed status=");
		put_dec((u64)(st & 0xffff));
		putc_('\n');
		return;
	}
	memcpy(sector0, bdata, 512);
	puts_("TINY: blk sector0: ");
	put_printable(sector0, 16);
	putc_('\n');

	if (param_is("tiny.blkwrite", "1")) {
		static const char msg[] = "tiny-guest-was-here";
		memset(bdata, 0, 512);
		memcpy(bdata, msg, sizeof(msg) - 1);
		st = blk_request(BLK_T_OUT, 1, bdata, 512, 0);
		puts_("TINY: blk write status=");
		put_dec((u64)(st & 0xffff));
		putc_('\n');
		st = blk_request(BLK_T_FLUSH, 0, 0, 0, 0);
		puts_("TINY: blk flush status=");
		put_dec((u64)(st & 0xffff));
		putc_('\n');
	}

	u8 id[21];
	memset(id, 0, sizeof(id));
	st = blk_request(BLK_T_GET_ID, 0, id, 20, 1);
	puts_("TINY: blk id status=");
	put_dec((u64)(st & 0xffff));
	puts_(" id: ");
	putn((const char *)id, 20);
	putc_('\n');

	if (param_is("tiny.hostile", "1"))
		blk_hostile();
}

/* ---- virtio-vsock -------------------------------------------------------- */

struct vsock_hdr {
	u64 src_cid;
	u64 dst_cid;
	u32 src_port;
	u32 dst_port;
	u32 len;
	u16 type;
	u16 op;
	u32 flags;
	u32 buf_alloc;
	u32 fwd_cnt;
} __attribute__((packed));

#define VS_OP_REQUEST 1
#define VS_OP_RESPONSE 2
#define VS_OP_RST 3
#define VS_OP_SHUTDOWN 4
#define VS_OP_RW 5
#define VS_TYPE_STREAM 1
#define HOST_CID 2
#define GUEST_PORT 5000
#define RXBUFS 4
#define RXBUF_LEN 2048

static struct vq vsq[3];
static u8 rxbuf[RXBUFS][RXBUF_LEN] NOINIT __attribute__((aligned(64)));
static struct vsock_hdr txhdr __attribute__((aligned(64)));
static u8 txdata[256] __attribute__((aligned(64)));
static u64 guest_cid = 3;
static u32 fwd_cnt;

static void vsock_post_rx(u16 i, int kick)
{
	set_desc(&vsq[0], i, (u64)rxbuf[i], RXBUF_LEN, DESC_F_WRITE, 0);
	vq_push(&vsq[0], i, kick);
}

/* Send the chain at tx descriptor 0 and wait for the device to take it. */
static int vsock_tx_chain(u64 limit)
{
	struct used_elem e;
	vq_push(&vsq[1], 0, 1);
	return vq_pop_used(&vsq[1], &e, limit);
}

static void fill_hdr(u32 src_port, u32 dst_port, u16 op, u32 flags, u32 len)
{
	memset(&txhdr, 0, sizeof(txhdr));
	txhdr.src_cid = guest_cid;
	txhdr.dst_cid = HOST_CID;
	txhdr.src_port = src_port;
	txhdr.dst_port = dst_port;
	txhdr.len = len;
	txhdr.type = VS_TYPE_STREAM;
	txhdr.op = op;
	txhdr.flags = flags;
	txhdr.buf_alloc = 64 * 1024;
	txhdr.fwd_cnt = fwd_cnt;
}

static int vsock_send(u32 dst_port, u16 op, u32 flags, const void *payload, u32 len)
{
	fill_hdr(GUEST_PORT, dst_port, op, flags, len);
	if (len) {
		memcpy(txdata, payload, len);
		set_desc(&vsq[1], 0, (u64)&txhdr, sizeof(txhdr), DESC_F_NEXT, 1);
		set_desc(&vsq[1], 1, (u64)txdata, len, 0, 0);
	} else {
		set_desc(&vsq[1], 0, (u64)&txhdr, sizeof(txhdr), 0, 0);
	}
	return vsock_tx_chain(WAIT_NORMAL);
}

/* Next packet for our connection to `port` (others are dropped), copied
 * out; its payload goes to `payload` (up to `cap` bytes). */
static int vsock_recv(u32 port, struct vsock_hdr *h, u8 *payload, u32 cap, u32 *plen)
{
	u64 t0 = rdtsc();
	for (;;) {
		struct used_elem e;
		u64 spent = rdtsc() - t0;
		if (spent > WAIT_NORMAL || vq_pop_used(&vsq[0], &e, WAIT_NORMAL - spent))
			return -1;
		if (e.id >= RXBUFS) {
			puts_("TINY: vsock bad rx id\n");
			return -1;
		}
		memcpy(h, rxbuf[e.id], sizeof(*h));
		u32 n = 0;
		if (e.len >= sizeof(*h) && h->op == VS_OP_RW) {
			n = h->len;
			if (n > e.len - sizeof(*h))
				n = e.len - (u32)sizeof(*h);
			if (n > cap)
				n = cap;
			memcpy(payload, rxbuf[e.id] + sizeof(*h), n);
		}
		vsock_post_rx((u16)e.id, 1);
		if (e.len < sizeof(*h) || h->dst_port != GUEST_PORT || h->src_port != port)
			continue;
		if (h->op == VS_OP_RW)
			fwd_cnt += h->len;
		*plen = n;
		return 0;
	}
}

/* Malformed tx packets; the device must consume each and keep working. */
static void vsock_hostile(u32 port)
{
	static const char *names[] = { "rw-huge-len", "unknown-op", "wrong-cid", "zero-length",
				       "oob-addr", "short-header" };
	for (u32 i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		switch (i) {
		case 0: /* claims 1 GiB of payload, carries 64 bytes */
			fill_hdr(5001, port, VS_OP_RW, 0, 1u << 30);
			set_desc(&vsq[1], 0, (u64)&txhdr, sizeof(txhdr), DESC_F_NEXT, 1);
			set_desc(&vsq[1], 1, (u64)txdata, 64, 0, 0);
			break;
		case 1:
			fill_hdr(5002, port, 99, 0, 0);
			set_desc(&vsq[1], 0, (u64)&txhdr, sizeof(txhdr), 0, 0);
			break;
		case 2:
			fill_hdr(5003, port, VS_OP_REQUEST, 0, 0);
			txhdr.src_cid = 77;
			set_desc(&vsq[1], 0, (u64)&txhdr, sizeof(txhdr), 0, 0);
			break;
		case 3:
			set_desc(&vsq[1], 0, (u64)&txhdr, 0, 0, 0);
			break;
		case 4:
			set_desc(&vsq[1], 0, 0x700000000000ull, sizeof(txhdr), 0, 0);
			break;
		case 5:
			fill_hdr(5004, port, VS_OP_REQUEST, 0, 0);
			set_desc(&vsq[1], 0, (u64)&txhdr, 10, 0, 0);
			break;
		}
		int to = vsock_tx_chain(WAIT_HOSTILE);
		puts_("TINY: vsockhostile ");
		puts_(names[i]);
		puts_(to ? " not consumed (timeout)\n" : " consumed\n");
	}
}

static void vsock_run(u32 port)
{
	u64 base = find_device(19);
	if (!base) {
		puts_("TINY: vsock: no virtio-vsock device\n");
		return;
	}
	if (vdev_init(base, vsq, 3, 1)) {
		puts_("TINY: vsock init failed\n");
		return;
	}
	guest_cid = mmio_r(base + R_CONFIG) | ((u64)mmio_r(base + R_CONFIG + 4) << 32);
	for (u16 i = 0; i < RXBUFS; i++)
		vsock_post_rx(i, i == RXBUFS - 1);

	if (param_is("tiny.vsockhostile", "1"))
		vsock_hostile(port);

	struct vsock_hdr h;
	static u8 payload[RXBUF_LEN] NOINIT;
	u32 n;
	if (vsock_send(port, VS_OP_REQUEST, 0, 0, 0)) {
		puts_("TINY: vsock REQUEST not consumed\n");
		return;
	}
	for (;;) {
		if (vsock_recv(port, &h, payload, sizeof(payload), &n)) {
			puts_("TINY: vsock no RESPONSE (timeout)\n");
			return;
		}
		if (h.op == VS_OP_RESPONSE)
			break;
		if (h.op == VS_OP_RST) {
			puts_("TINY: vsock connection refused\n");
			return;
		}
	}
	puts_("TINY: vsock connected\n");
	static const char hello[] = "hello from tiny guest";
	if (vsock_send(port, VS_OP_RW, 0, hello, sizeof(hello) - 1)) {
		puts_("TINY: vsock RW not consumed\n");
		return;
	}
	for (;;) {
		if (vsock_recv(port, &h, payload, sizeof(payload) - 1, &n)) {
			puts_("TINY: vsock no data from the host (timeout)\n");
			return;
		}
		if (h.op == VS_OP_RW)
			break;
		if (h.op == VS_OP_RST) {
			puts_("TINY: vsock reset by the host\n");
			return;
		}
	}
	puts_("TINY: vsock got: ");
	put_printable(payload, n);
	putc_('\n');
	vsock_send(port, VS_OP_SHUTDOWN, 3, 0, 0);
	for (;;) {
		if (vsock_recv(port, &h, payload, sizeof(payload), &n)) {
			puts_("TINY: vsock no RST after SHUTDOWN (timeout)\n");
			return;
		}
		if (h.op == VS_OP_RST)
			break;
	}
	puts_("TINY: vsock done\n");
}

/* ---- start of day and the way out ---------------------------------------- */

static void read_start_info(u64 si)
{
	if (!si || *(volatile u32 *)si != HVM_START_MAGIC) {
		puts_("TINY: no PVH start_info\n");
		return;
	}
	u64 cl = *(volatile u64 *)(si + 24);
	if (cl)
		cmdline = (const char *)cl;
	u64 map = *(volatile u64 *)(si + 40);
	u32 entries = *(volatile u32 *)(si + 48);
	u64 end = 0;
	for (u32 i = 0; map && i < entries && i < 64; i++) {
		u64 addr = *(volatile u64 *)(map + 24 * i);
		u64 size = *(volatile u64 *)(map + 24 * i + 8);
		u32 type = *(volatile u32 *)(map + 24 * i + 16);
		if (type == 1 && addr + size <= 0xd0000000ull && addr + size > end)
			end = addr + size;
	}
	if (end)
		ram_end = end;
}

static void __attribute__((noreturn)) halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

static void __attribute__((noreturn)) do_exit(void)
{
	if (param_is("tiny.exit", "spin")) {
		puts_("TINY: spinning\n");
		for (;;)
			cpu_relax();
	}
	if (param_is("tiny.exit", "reset")) {
		puts_("TINY: exit reset\n");
		outb(0x64, 0xfe);
	} else if (param_is("tiny.exit", "triple")) {
		puts_("TINY: exit triple\n");
		static const struct {
			u16 limit;
			u64 base;
		} __attribute__((packed)) no_idt = { 0, 0 };
		/* ud2 rather than int3: under kvm_pvm, INT3/INT n are handed to
		 * KVM's instruction emulator, which cannot deliver software
		 * interrupts in protected mode (an internal error, not a
		 * triple fault); a real exception triple-faults everywhere. */
		__asm__ volatile("lidt %0; ud2" : : "m"(no_idt));
	} else {
		puts_("TINY: exit poweroff\n");
		outb(0x510, 0);
	}
	halt_forever();
}

void guest_main(u64 start_info)
{
	puts_("TINY: hello\n");
	read_start_info(start_info);
	if (param_is("tiny.blk", "1"))
		blk_run();
	u64 port = param_num("tiny.vsock", 0);
	if (port)
		vsock_run((u32)port);
	do_exit();
}
