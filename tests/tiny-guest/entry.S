/*
 * PVH entry of the tiny test guest.
 *
 * Entered as the PVH boot protocol says: 32-bit protected mode, paging off,
 * flat CS/DS, %ebx = physical address of hvm_start_info. We turn on long
 * mode with page tables that identity-map the first 4 GiB with 2 MiB pages
 * (the virtio-mmio window at 0xd0000000 and above uncached), zero .bss and
 * call guest_main(start_info).
 *
 * The page tables are assembled into .data rather than filled by a loop at
 * boot: where /dev/kvm is kvm_pvm, a guest that is not PVM-aware runs in
 * KVM's instruction emulator, and a 2048-iteration loop costs ~15 ms there.
 */

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define PTE_P_RW 0x3			/* present | writable */
#define PTE_2M 0x83			/* present | writable | 2 MiB page */
#define PTE_UC 0x18			/* PWT | PCD */
#define MMIO_FIRST_2M (0xd0000000 >> 21)

	.section .note.Xen, "a", @note
	.balign 4
	.long 4				/* namesz: "Xen\0" */
	.long 4				/* descsz: a 32-bit physical address */
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.balign 4
	.long pvh_start32
	.balign 4

	.section .text.entry, "ax"
	.code32
	.globl pvh_start32
pvh_start32:
	cli
	cld
	mov	%ebx, %esi			/* start_info, kept in %esi */
	mov	$pml4, %eax
	mov	%eax, %cr3
	mov	%cr4, %eax
	or	$0x20, %eax			/* PAE */
	mov	%eax, %cr4
	mov	$0xc0000080, %ecx		/* EFER */
	rdmsr
	or	$0x100, %eax			/* LME */
	wrmsr
	mov	%cr0, %eax
	or	$0x80000001, %eax		/* PG | PE */
	mov	%eax, %cr0
	lgdt	gdt64_ptr
	ljmp	$0x08, $start64

	.code64
start64:
	mov	$0x10, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	mov	%ax, %fs
	mov	%ax, %gs
	/* Zero .bss (the ELF loader should have; we do not rely on it). */
	mov	$__bss_start, %edi
	mov	$__bss_end, %ecx
	sub	%edi, %ecx
	shr	$3, %ecx
	xor	%eax, %eax
	rep stosq
	mov	$stack_top, %rsp
	mov	%esi, %edi			/* guest_main(start_info) */
	call	guest_main
1:	cli
	hlt
	jmp	1b

	.section .rodata
	.balign 8
gdt64:
	.quad 0
	.quad 0x00af9a000000ffff		/* 0x08: 64-bit code */
	.quad 0x00cf92000000ffff		/* 0x10: data */
gdt64_end:
gdt64_ptr:
	.word gdt64_end - gdt64 - 1
	.long gdt64

	/* Identity map of the first 4 GiB: PML4[0] -> PDPT, PDPT[0..3] -> four
	 * page directories, entry i of which maps i << 21. */
	.section .data.pagetables, "aw"
	.balign 4096
pml4:
	.quad pdpt + PTE_P_RW
	.fill 511, 8, 0
pdpt:
	.quad pd + PTE_P_RW, pd + 0x1000 + PTE_P_RW
	.quad pd + 0x2000 + PTE_P_RW, pd + 0x3000 + PTE_P_RW
	.fill 508, 8, 0
pd:
	.set i, 0
	.rept 2048
	.if i < MMIO_FIRST_2M
	.quad (i << 21) | PTE_2M
	.else
	.quad (i << 21) | PTE_2M | PTE_UC
	.endif
	.set i, i + 1
	.endr

	.section .noinit, "aw", @nobits
	.balign 16
stack:	.skip 16384
stack_top:
