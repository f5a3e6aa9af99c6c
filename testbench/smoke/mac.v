// Two-stage pipelined signed multiply-accumulate: out = acc_in + a * b,
// wrapped to ACC_WIDTH bits, valid two clocks after the inputs are sampled.
`timescale 1ns / 1ps

module mac #(
    parameter A_WIDTH = 8,
    parameter B_WIDTH = 8,
    parameter ACC_WIDTH = 20
) (
    input  wire                        clk,
    input  wire                        rst,
    input  wire                        in_valid,
    input  wire signed [A_WIDTH-1:0]   a,
    input  wire signed [B_WIDTH-1:0]   b,
    input  wire signed [ACC_WIDTH-1:0] acc_in,
    output reg                         out_valid,
    output reg  signed [ACC_WIDTH-1:0] out
);
    localparam PROD_WIDTH = A_WIDTH + B_WIDTH;

    reg                         stage1_valid;
    reg signed [PROD_WIDTH-1:0] stage1_product;
    reg signed [ACC_WIDTH-1:0]  stage1_acc;

    always @(posedge clk) begin
        if (rst) begin
            stage1_valid <= 1'b0;
            out_valid    <= 1'b0;
        end else begin
            stage1_valid <= in_valid;
            out_valid    <= stage1_valid;
        end
        stage1_product <= a * b;
        stage1_acc     <= acc_in;
        // Intended Verilog semantics: sign-extend both operands, keep the low ACC_WIDTH bits.
        /* verilator lint_off WIDTHEXPAND */
        /* verilator lint_off WIDTHTRUNC */
        out            <= stage1_acc + stage1_product;
        /* verilator lint_on WIDTHTRUNC */
        /* verilator lint_on WIDTHEXPAND */
    end
endmodule
